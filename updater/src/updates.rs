//! Updates from the repository: `check` (which release this device should run next),
//! `install` without a source (download and install it), and the polling `daemon`.
//!
//! A target is a candidate when its signed `custom` names this device's product and channel
//! and a version newer than the booted one; among the newest, the smallest bundle this device
//! can apply wins (a delta whose base is the running slot's image, else a full image). The
//! bundle is then verified twice: by TUF (length and hashes from the signed targets metadata,
//! checked before the slot switch) and by its own signatures and chunk hashes.

use crate::config::{Config, Repository};
use crate::error::{Result, UpdateError};
use crate::fetch::Fetcher;
use crate::install::{InstallEvent, InstallOptions, InstallReport};
use crate::lifecycle;
use crate::slot::SlotName;
use crate::tuf_client::{target_url, MetadataCache, RefreshReport, TufClient, VerifiedTarget};
use ota_core::tuf::metadata::TargetFile;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::time::Duration;

/// The update chosen for this device.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Target path in the repository.
    pub name: String,
    /// Release version.
    pub version: semver::Version,
    /// Bundle length in bytes.
    pub length: u64,
    /// Where it is downloaded from.
    pub url: String,
    /// `delta` when every image applies as a delta from the running slot, `full` otherwise.
    pub kind: &'static str,
    /// The signed target entry.
    #[serde(skip)]
    pub entry: TargetFile,
}

/// A target that was not chosen, and why (`check --json` lists them for fleet admins).
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Target path.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// The result of `ota-update check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The product this device runs.
    pub product: String,
    /// The channel it follows.
    pub channel: String,
    /// The booted slot.
    pub booted_slot: SlotName,
    /// The booted version, if known.
    pub booted_version: Option<semver::Version>,
    /// The update to install, if any.
    pub update: Option<Candidate>,
    /// Targets for this product and channel that were not chosen.
    pub skipped: Vec<Skipped>,
    /// What the metadata refresh did.
    pub refresh: RefreshReport,
}

fn repository(config: &Config) -> Result<&Repository> {
    config
        .repository
        .as_ref()
        .ok_or_else(|| UpdateError::Config {
            path: config.path.display().to_string(),
            reason: "no [repository] section: set url and root to update from a repository".into(),
        })
}

/// The device's metadata cache: `STATE_DIR/tuf`, started from the shipped root.
fn device_cache(config: &Config, repo: &Repository) -> Result<MetadataCache> {
    let cache = MetadataCache::new(&config.state_dir.join("tuf"));
    if !cache.dir().join("root.json").exists() {
        let root = std::fs::read(&repo.root).map_err(UpdateError::io(format!(
            "cannot read the trusted root {}",
            repo.root.display()
        )))?;
        cache.init_root(&root, false)?;
    }
    Ok(cache)
}

fn custom_str<'a>(custom: Option<&'a Value>, key: &str) -> Option<&'a str> {
    custom?.get(key)?.as_str()
}

/// Which image names a target can be applied with, given the running slot's image hashes.
fn applicable(
    custom: Option<&Value>,
    running: &dyn Fn(&str, u64) -> Option<String>,
) -> Option<bool> {
    let Some(images) = custom
        .and_then(|c| c.get("images"))
        .and_then(Value::as_array)
    else {
        // No image list: a bundle not made by `ota-sign repo add`; the installer decides.
        return Some(false);
    };
    let mut by_name: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for image in images {
        let name = image.get("name").and_then(Value::as_str)?;
        let entry = by_name.entry(name).or_insert((false, false));
        match image.get("kind").and_then(Value::as_str) {
            Some("full") => entry.0 = true,
            Some("delta") => {
                let base = image.get("base_sha256").and_then(Value::as_str)?;
                let size = image.get("base_size").and_then(Value::as_u64).unwrap_or(0);
                if running(name, size).as_deref() == Some(base) {
                    entry.1 = true;
                }
            }
            _ => return None,
        }
    }
    if by_name.values().any(|&(full, delta)| !full && !delta) {
        return None;
    }
    Some(by_name.values().all(|&(_, delta)| delta))
}

/// Hashes of the running slot's images over `size` bytes: the recorded ones when they cover
/// exactly that length, else read from the slot, cached per image.
fn running_image_hash(
    config: &Config,
    status: &lifecycle::Status,
    booted: &SlotName,
) -> impl Fn(&str, u64) -> Option<String> {
    let recorded: BTreeMap<String, (u64, String)> = status
        .slots
        .iter()
        .find(|s| &s.name == booted)
        .and_then(|s| s.record.as_ref())
        .map(|r| {
            r.images
                .iter()
                .map(|(n, i)| (n.clone(), (i.size, i.sha256.to_hex())))
                .collect()
        })
        .unwrap_or_default();
    let devices = config.slots.get(booted).cloned().unwrap_or_default();
    let computed = std::cell::RefCell::new(BTreeMap::<(String, u64), Option<String>>::new());
    move |name: &str, size: u64| {
        // A factory record hashes the whole partition; a delta base is the image's length.
        if let Some((_, h)) = recorded.get(name).filter(|(len, _)| *len == size) {
            return Some(h.clone());
        }
        let key = (name.to_owned(), size);
        if let Some(h) = computed.borrow().get(&key) {
            return h.clone();
        }
        let hash = devices.get(name).and_then(|path| {
            let file = std::fs::File::open(path).ok()?;
            let mut hasher = Sha256::new();
            std::io::copy(&mut file.take(size), &mut hasher).ok()?;
            Some(hex::encode(hasher.finalize()))
        });
        computed.borrow_mut().insert(key, hash.clone());
        hash
    }
}

fn skipped_as(name: &str, reason: String) -> Skipped {
    Skipped {
        name: name.to_owned(),
        reason,
    }
}

/// Refreshes the metadata and chooses the update for this device.
pub fn check(config: &Config, fetcher: &Fetcher) -> Result<CheckReport> {
    let repo = repository(config)?;
    let cache = device_cache(config, repo)?;
    let client = TufClient::new(fetcher, &repo.metadata_url, cache);
    let (mut set, mut refresh) = client.refresh()?;
    let targets = client.all_targets(&mut set, &mut refresh)?;
    let consistent = set.root().meta.consistent_snapshot;

    let status = lifecycle::status(config)?;
    let booted = status.booted.clone().ok_or_else(|| {
        UpdateError::Bootloader(
            status
                .booted_error
                .clone()
                .unwrap_or_else(|| "the booted slot is unknown".into()),
        )
    })?;
    let booted_version = status
        .slots
        .iter()
        .find(|s| s.name == booted)
        .and_then(|s| s.record.as_ref())
        .and_then(|r| r.version.clone())
        .or_else(|| config.factory_version.clone());
    let running = running_image_hash(config, &status, &booted);

    let mut skipped = Vec::new();
    let mut best: Option<(Candidate, bool)> = None;
    for (name, entry) in targets {
        let custom = entry.custom.as_ref();
        if custom_str(custom, "product") != Some(config.product.as_str())
            || custom_str(custom, "channel") != Some(repo.channel.as_str())
        {
            // Other products and channels are not this device's business; not even listed.
            continue;
        }
        let Some(version) =
            custom_str(custom, "version").and_then(|v| semver::Version::parse(v).ok())
        else {
            skipped.push(skipped_as(&name, "no valid custom.version".into()));
            continue;
        };
        if let Some(b) = &booted_version {
            if &version <= b {
                skipped.push(skipped_as(
                    &name,
                    format!("version {version} is not newer than the booted {b}"),
                ));
                continue;
            }
        }
        let Some(is_delta) = applicable(custom, &running) else {
            skipped.push(skipped_as(
                &name,
                "a delta from a base this device does not run, without a full image".into(),
            ));
            continue;
        };
        let candidate = Candidate {
            url: target_url(&repo.targets_url, &name, &entry, consistent),
            length: entry.length,
            kind: if is_delta { "delta" } else { "full" },
            name: name.clone(),
            version,
            entry,
        };
        let better = match &best {
            None => true,
            Some((b, _)) => {
                candidate.version > b.version
                    || (candidate.version == b.version && candidate.length < b.length)
            }
        };
        if better {
            if let Some((old, _)) = best.take() {
                skipped.push(Skipped {
                    name: old.name.clone(),
                    reason: format!("{} {} preferred", candidate.name, candidate.version),
                });
            }
            best = Some((candidate, is_delta));
        } else {
            skipped.push(skipped_as(
                &name,
                "an equal or newer release is preferred".into(),
            ));
        }
    }
    Ok(CheckReport {
        product: config.product.clone(),
        channel: repo.channel.clone(),
        booted_slot: booted,
        booted_version,
        update: best.map(|(c, _)| c),
        skipped,
        refresh,
    })
}

/// Installs the update `check` chose, if any: streams the bundle through the TUF length and
/// hash check into the installer.
pub fn install_update(
    config: &Config,
    fetcher: &Fetcher,
    events: &dyn Fn(InstallEvent),
) -> Result<(CheckReport, Option<InstallReport>)> {
    let report = check(config, fetcher)?;
    let Some(candidate) = &report.update else {
        return Ok((report, None));
    };
    let download = fetcher
        .open(&candidate.url, candidate.entry.length, true)
        .map_err(UpdateError::Fetch)?;
    let verified = VerifiedTarget::new(download, &candidate.url, &candidate.entry)
        .map_err(UpdateError::Fetch)?;
    let input: Box<dyn Read + Send> = Box::new(BufReader::with_capacity(1 << 20, verified));
    let installed = crate::install::install(
        config,
        input,
        &InstallOptions {
            allow_downgrade: false,
        },
        events,
    )?;
    Ok((report, Some(installed)))
}

/// One line for the log when a daemon round fails.
fn log_line(what: &str) {
    eprintln!("ota-update daemon: {what}");
}

/// Random seconds in `0..=max` (jitter), from the OS generator.
fn jitter(max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    use rand_core::RngCore;
    rand_core::OsRng.next_u64() % (max + 1)
}

/// Polls the repository for ever: check, install, reboot (when configured), with jitter
/// between rounds and exponential back-off after failures. `rounds` bounds the loop (tests);
/// `None` runs until killed.
pub fn daemon(config: &Config, rounds: Option<u64>) -> Result<()> {
    let settings = config.daemon.clone();
    let fetcher = Fetcher::new(config.fetch.clone()).map_err(UpdateError::Fetch)?;
    let mut failures: u32 = 0;
    let mut round = 0u64;
    loop {
        round += 1;
        let outcome = install_update(config, &fetcher, &|_| {});
        let wait = match outcome {
            Ok((report, Some(installed))) => {
                failures = 0;
                log_line(&format!(
                    "installed {} {} into slot {}",
                    report.update.as_ref().map_or("", |c| c.name.as_str()),
                    installed.version,
                    installed.slot
                ));
                if settings.reboot {
                    log_line("rebooting into the new slot");
                    lifecycle::request_reboot(config)?;
                }
                settings.interval_secs
            }
            Ok((_, None)) => {
                failures = 0;
                settings.interval_secs
            }
            // Not worth retrying until something changes on the device.
            Err(e @ (UpdateError::Busy(_) | UpdateError::Refused(_))) => {
                log_line(&format!("{e}; trying again later"));
                settings.interval_secs
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // Back off from a quarter interval, doubling, capped.
                let base = (settings.interval_secs / 4).max(1);
                let wait = base
                    .saturating_mul(1u64 << failures.min(20))
                    .min(settings.max_backoff_secs);
                log_line(&format!(
                    "{e} (exit class {}); retrying in about {wait} s",
                    e.exit_code()
                ));
                wait
            }
        };
        if rounds.is_some_and(|r| round >= r) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(wait + jitter(settings.jitter_secs)));
    }
}
