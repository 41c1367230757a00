//! Updates from the repository: `check` (which release this device should run next),
//! `install` without a source (download and install it), and the polling `daemon`.
//!
//! A target is a candidate when its signed `custom` names this device's product and channel
//! and a version newer than the booted one; among the newest, the smallest bundle this device
//! can apply wins (a delta whose base is the running slot's image, else a full image). The
//! bundle is then verified twice: by TUF (length and hashes from the signed targets metadata,
//! checked before the slot switch) and by its own signatures and chunk hashes.

use crate::config::{Config, Repository};
use crate::device::{Device, DeviceView};
use crate::error::{Result, UpdateError};
use crate::fetch::Fetcher;
use crate::install::{InstallEvent, InstallOptions, InstallReport};
use crate::journal::InstallJournal;
use crate::lifecycle;
use crate::rollout::{RolloutDecision, Rollouts};
use crate::slot::{device_size, hash_prefix, SlotName};
use crate::source::BundleSource;
use crate::state::{Hold, ImageRecord, Pending};
use crate::tuf_client::{target_url, MetadataCache, RefreshReport, TufClient, VerifiedTarget};
use ota_core::release::{choose_payloads, ReleaseInfo};
use ota_core::tuf::metadata::TargetFile;
use ota_core::Sha256Digest;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
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
    /// Set when the release is older than the running one and signed rollout metadata
    /// authorises the move (the running release was pulled): why, and by which version.
    pub authorised_downgrade: Option<String>,
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
    /// The update to install, if any (`null` when there is nothing to install now).
    pub update: Option<Candidate>,
    /// An installed release waiting for its reboot (never downloaded or written again).
    pub reboot_pending: Option<Pending>,
    /// The hold that stops every update now, if any.
    pub held: Option<Hold>,
    /// Why the newest release of the channel is or is not offered to this device now
    /// (rollout share, this device's bucket, paused, pulled).
    pub rollout: Option<RolloutDecision>,
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

/// What a refresh gives `check`: every target, the refresh report, and whether the repository
/// uses consistent snapshots (hash-prefixed target names).
struct Refreshed {
    targets: Vec<(String, TargetFile)>,
    report: RefreshReport,
    consistent: bool,
    /// Version of the rollout role's metadata, when the repository has one.
    rollout_version: Option<u64>,
    /// The reference time of the refresh (clock policy), seconds since the epoch.
    now: u64,
}

/// Refreshes the metadata (under the cache's own lock: parallel checks wait for each other
/// instead of racing on the cache) and returns every target with the refresh report.
fn refresh_targets(config: &Config, repo: &Repository, fetcher: &Fetcher) -> Result<Refreshed> {
    let cache = MetadataCache::new(&config.state_dir.join("tuf"));
    let _guard = cache.lock()?;
    let cache = device_cache(config, repo)?;
    let client = TufClient::new(fetcher, &repo.metadata_url, cache);
    let (mut set, mut refresh) = client.refresh()?;
    let targets = client.all_targets(&mut set, &mut refresh)?;
    Ok(Refreshed {
        targets,
        report: refresh,
        consistent: set.root().meta.consistent_snapshot,
        rollout_version: set
            .targets(ota_core::rollout::ROLLOUT_ROLE)
            .map(|t| t.meta.common.version),
        now: set
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

/// Most distinct base lengths hashed per image in one check: a release offers deltas from a
/// few bases; anything more is not worth reading the slot for (and bounds what a hostile
/// targets key can make a device do).
const MAX_BASE_LENGTHS_PER_IMAGE: usize = 8;

/// SHA-256 of the running slot's images over a given length: the recorded hash when it covers
/// exactly that length, else read from the slot; cached, clamped to the device, bounded.
struct RunningImages {
    recorded: BTreeMap<String, ImageRecord>,
    devices: BTreeMap<String, PathBuf>,
    computed: RefCell<BTreeMap<(String, u64), Option<Sha256Digest>>>,
}

impl RunningImages {
    fn new(config: &Config, view: &DeviceView, booted: &SlotName) -> Self {
        RunningImages {
            recorded: view
                .state
                .slots
                .get(booted)
                .map(|r| r.images.clone())
                .unwrap_or_default(),
            devices: config.slots.get(booted).cloned().unwrap_or_default(),
            computed: RefCell::new(BTreeMap::new()),
        }
    }

    fn hash(&self, name: &str, len: u64) -> Option<Sha256Digest> {
        // A factory record hashes the whole partition; a delta base is the image's length.
        if let Some(image) = self.recorded.get(name).filter(|i| i.size == len) {
            return Some(image.sha256);
        }
        let key = (name.to_owned(), len);
        if let Some(known) = self.computed.borrow().get(&key) {
            return *known;
        }
        let tried = self
            .computed
            .borrow()
            .keys()
            .filter(|(n, _)| n == name)
            .count();
        let device = self.devices.get(name)?;
        let fits = device_size(device).is_ok_and(|size| len <= size);
        let hash = if fits && tried < MAX_BASE_LENGTHS_PER_IMAGE {
            hash_prefix(device, len).ok()
        } else {
            None
        };
        self.computed.borrow_mut().insert(key, hash);
        hash
    }

    /// Whether the running slot holds exactly this release's full images.
    fn holds(&self, release: &ReleaseInfo) -> bool {
        let full = release.full_images();
        !full.is_empty()
            && full.len() == self.devices.len()
            && full.iter().all(|(name, (sha256, size))| {
                size.is_some_and(|len| self.hash(name, len) == Some(*sha256))
            })
    }
}

/// A target of this product and channel, read from its signed `custom`.
struct Offer {
    name: String,
    entry: TargetFile,
    release: ReleaseInfo,
}

/// The targets for this product and channel; others are not this device's business and are
/// not even listed. Ours that cannot be read are listed as skipped.
fn offers_for(
    config: &Config,
    channel: &str,
    targets: Vec<(String, TargetFile)>,
    rollouts: &Rollouts,
    skipped: &mut Vec<Skipped>,
) -> Vec<Offer> {
    let mut offers = Vec::new();
    for (name, entry) in targets {
        let Some(custom) = entry.custom.as_ref() else {
            continue;
        };
        let field = |key: &str| custom.get(key).and_then(|v| v.as_str());
        let product_ok = field("product") == Some(config.product.as_str());
        // Added under this channel, or promoted to it by a rollout entry (no second copy).
        let promoted = || {
            field("version")
                .and_then(|v| semver::Version::parse(v).ok())
                .is_some_and(|v| rollouts.offers_on(&config.product, channel, &v))
        };
        if !product_ok || !(field("channel") == Some(channel) || promoted()) {
            continue;
        }
        match ReleaseInfo::from_custom(custom) {
            Ok(release) => offers.push(Offer {
                name,
                entry,
                release,
            }),
            Err(e) => skipped.push(skipped_as(&name, e.to_string())),
        }
    }
    offers
}

fn skipped_as(name: &str, reason: String) -> Skipped {
    Skipped {
        name: name.to_owned(),
        reason,
    }
}

/// Why this device does not take `release` now, if it does not (the device-side policy).
fn policy_refusal(
    view: &DeviceView,
    booted_version: Option<&semver::Version>,
    release: &ReleaseInfo,
    now: u64,
) -> Option<String> {
    let version = &release.version;
    if let Some(running) = booted_version.filter(|running| version <= *running) {
        return Some(format!(
            "version {version} is not newer than the booted {running}"
        ));
    }
    if let Some(failed) = view.state.failure_of(version) {
        return Some(format!(
            "{version} failed its trial on this device at {}: {}; only `ota-update install SOURCE` retries it",
            format_time(failed.at),
            failed.reason
        ));
    }
    if let Some(hold) = view
        .state
        .hold_on(version, now)
        .filter(|h| h.version.is_some())
    {
        return Some(format!(
            "{version} is held ({}); `ota-update release-hold` lifts it",
            hold.reason
        ));
    }
    if let Some(pending) = view.reboot_pending() {
        if pending.version.as_ref().is_some_and(|p| version <= p) {
            return Some(format!(
                "{} is installed in slot {}, reboot pending",
                pending
                    .version
                    .as_ref()
                    .map_or_else(String::new, |v| v.to_string()),
                pending.slot
            ));
        }
    }
    None
}

fn format_time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Refreshes the metadata and chooses the update for this device.
pub fn check(config: &Config, fetcher: &Fetcher) -> Result<CheckReport> {
    check_device(config, fetcher, &DeviceView::read(config)?)
}

/// [`check`] for a device already read (the install holds the lock while it checks).
fn check_device(config: &Config, fetcher: &Fetcher, view: &DeviceView) -> Result<CheckReport> {
    let repo = repository(config)?;
    let booted = view.booted_slot()?.clone();
    let mut refreshed = refresh_targets(config, repo, fetcher)?;
    // Delegated branches that could not be loaded: their targets are left out, said here.
    let mut skipped: Vec<Skipped> = (refreshed.report.unavailable.iter())
        .map(|u| Skipped {
            name: u.name.clone(),
            reason: format!("delegated metadata unavailable: {}", u.reason),
        })
        .collect();
    let rollouts = Rollouts::take_from(
        &mut refreshed.targets,
        refreshed.rollout_version,
        &mut skipped,
    );
    let targets = std::mem::take(&mut refreshed.targets);
    let offers = offers_for(config, &repo.channel, targets, &rollouts, &mut skipped);
    let running = RunningImages::new(config, view, &booted);
    // Records rebuilt after a loss know no running version: recognise it by its images.
    let booted_version = view.booted_version(config).or_else(|| {
        offers
            .iter()
            .filter(|o| running.holds(&o.release))
            .map(|o| o.release.version.clone())
            .max()
    });
    let pulled = booted_version
        .clone()
        .filter(|v| rollouts.pulled(&config.product, &repo.channel, v));
    let choice = Choice {
        config,
        view,
        rollouts: &rollouts,
        channel: &repo.channel,
        booted_version: booted_version.as_ref(),
        pulled: pulled.as_ref(),
        slot_images: config.slots[&booted].keys().map(String::as_str).collect(),
        running: &running,
        now: refreshed.now,
    };
    let (mut best, rollout) = choice.choose(offers, repo, refreshed.consistent, &mut skipped);
    let held = view.state.device_hold(crate::state::now()).cloned();
    if let (Some(hold), Some(candidate)) = (&held, &best) {
        let until = hold.until.map_or_else(
            || "until released".to_owned(),
            |t| format!("until {}", format_time(t)),
        );
        skipped.push(skipped_as(
            &candidate.name,
            format!(
                "updates are held {until} ({}); `ota-update release-hold` lifts it",
                hold.reason
            ),
        ));
        best = None;
    }
    Ok(CheckReport {
        product: config.product.clone(),
        channel: repo.channel.clone(),
        booted_slot: booted,
        booted_version,
        update: best,
        reboot_pending: view.reboot_pending().cloned(),
        held,
        rollout,
        skipped,
        refresh: refreshed.report,
    })
}

/// What the choice of a release depends on.
struct Choice<'a> {
    config: &'a Config,
    view: &'a DeviceView,
    rollouts: &'a Rollouts,
    channel: &'a str,
    booted_version: Option<&'a semver::Version>,
    /// The running version, when the fleet admin pulled it.
    pulled: Option<&'a semver::Version>,
    slot_images: Vec<&'a str>,
    running: &'a RunningImages,
    /// Reference time of the metadata refresh.
    now: u64,
}

impl Choice<'_> {
    /// The release to install (newest first, smallest bundle among equals) and the rollout
    /// decision for the newest release of the channel.
    fn choose(
        &self,
        offers: Vec<Offer>,
        repo: &Repository,
        consistent: bool,
        skipped: &mut Vec<Skipped>,
    ) -> (Option<Candidate>, Option<RolloutDecision>) {
        let mut best: Option<Candidate> = None;
        let mut newest: Option<RolloutDecision> = None;
        for offer in offers {
            let release = &offer.release;
            let decision =
                self.rollouts
                    .decide(self.config, self.channel, &release.version, self.now);
            if newest.as_ref().is_none_or(|n| release.version > n.version) {
                newest = Some(decision.clone());
            }
            let refusal = if decision.eligible {
                self.refusal(release)
            } else {
                Some(decision.reason())
            };
            if let Some(reason) = refusal {
                skipped.push(skipped_as(&offer.name, reason));
                continue;
            }
            let kind = match applicable_kind(release, &self.slot_images, self.running) {
                Ok(kind) => kind,
                Err(reason) => {
                    skipped.push(skipped_as(&offer.name, reason));
                    continue;
                }
            };
            let authorised_downgrade = self
                .pulled
                .filter(|running| release.version < **running)
                .map(|running| {
                    format!(
                        "{running} was pulled by the fleet admin; moving to {} as authorised by rollout metadata v{}",
                        release.version,
                        self.rollouts.metadata_version.unwrap_or(0)
                    )
                });
            let candidate = Candidate {
                url: target_url(&repo.targets_url, &offer.name, &offer.entry, consistent),
                length: offer.entry.length,
                kind,
                name: offer.name,
                version: release.version.clone(),
                authorised_downgrade,
                entry: offer.entry,
            };
            prefer(&mut best, candidate, skipped);
        }
        (best, newest)
    }

    /// Why this device does not take `release` now (device-side policy), if it does not.
    fn refusal(&self, release: &ReleaseInfo) -> Option<String> {
        let version = &release.version;
        let now = crate::state::now();
        match self.pulled {
            // The running release was pulled: any other release may replace it, older ones
            // included; the failed, held and pending rules still apply.
            Some(running) if version == running => {
                Some(format!("{version} is the running release (pulled)"))
            }
            Some(_) => policy_refusal(self.view, None, release, now),
            None => policy_refusal(self.view, self.booted_version, release, now),
        }
    }
}

/// `delta` when every image applies as a delta from the running slot, `full` when some needs
/// its full image; an error saying why when the release cannot be applied here.
fn applicable_kind(
    release: &ReleaseInfo,
    slot_images: &[&str],
    running: &RunningImages,
) -> std::result::Result<&'static str, String> {
    if release.images.is_empty() {
        // No image list: a bundle not added by `ota-sign repo add`; the installer decides.
        return Ok("full");
    }
    if release.image_names() != slot_images {
        return Err(format!(
            "it updates images [{}], this device's slots hold [{}]",
            release.image_names().join(", "),
            slot_images.join(", ")
        ));
    }
    let chosen = choose_payloads(&release.offers(), slot_images, |name, len| {
        running.hash(name, len)
    })
    .map_err(|e| format!("{e}: this device runs none of those bases"))?;
    Ok(if chosen.values().all(|c| c.delta) {
        "delta"
    } else {
        "full"
    })
}

/// Keeps the newest release, the smallest bundle among equals; the loser is listed as skipped.
fn prefer(best: &mut Option<Candidate>, candidate: Candidate, skipped: &mut Vec<Skipped>) {
    let better = best.as_ref().is_none_or(|b| {
        candidate.version > b.version
            || (candidate.version == b.version && candidate.length < b.length)
    });
    if better {
        if let Some(old) = best.take() {
            skipped.push(skipped_as(
                &old.name,
                format!("{} {} preferred", candidate.name, candidate.version),
            ));
        }
        *best = Some(candidate);
    } else {
        skipped.push(skipped_as(
            &candidate.name,
            "an equal or newer release is preferred".into(),
        ));
    }
}

/// Installs the update `check` chose, if any: streams the bundle through the TUF length and
/// hash check into the installer. The device lock is taken first, so the check and the install
/// see the same device.
pub fn install_update(
    config: &Config,
    fetcher: &Fetcher,
    events: &dyn Fn(InstallEvent),
) -> Result<(CheckReport, Option<InstallReport>)> {
    let mut device = Device::open(config)?;
    // Nothing is fetched while a trial runs: the other slot is its fallback.
    device.ensure_installable()?;
    let report = check_device(config, fetcher, &device.view())?;
    let Some(candidate) = &report.update else {
        return Ok((report, None));
    };
    if let Some(reason) = &candidate.authorised_downgrade {
        // Back to a release the other slot still holds, verified: no download, no write.
        if device.other_slot_holds(&candidate.version) {
            let slot = device.switch_to_verified(&candidate.version, reason)?;
            let version = candidate.version.clone();
            return Ok((report, Some(InstallReport { slot, version })));
        }
    }
    let source = format!("repository target {}", candidate.name);
    // An interrupted install of this target asks for the bundle's head first, then skips to
    // where the slot's verified bytes end.
    let head = InstallJournal::load(&config.state_dir)
        .filter(|j| j.source == source)
        .map(|j| j.head_len);
    let (url, length) = (&candidate.url, candidate.entry.length);
    let download = match head {
        Some(head) => fetcher.open_head(url, length, true, head),
        None => fetcher.open(url, length, true),
    }
    .map_err(UpdateError::Fetch)?;
    let verified =
        VerifiedTarget::new(download, url, &candidate.entry).map_err(UpdateError::Fetch)?;
    let input = BundleSource::new(Box::new(verified));
    let release = candidate
        .entry
        .custom
        .as_ref()
        .and_then(|custom| ReleaseInfo::from_custom(custom).ok());
    let options = InstallOptions {
        allow_downgrade: candidate.authorised_downgrade.is_some(),
        target_sha256: candidate.entry.hashes.get("sha256").cloned(),
        authorised_downgrade: candidate.authorised_downgrade.clone(),
        source: Some(source),
        release,
    };
    let installed = crate::install::install_on(&mut device, input, &options, events)?;
    Ok((report, Some(installed)))
}

/// The downloader of a device: its `User-Agent` says `ota-update/VERSION (PRODUCT; RELEASE;
/// CHANNEL)` — what a fleet report counts from access logs; no device id, nothing secret.
pub fn device_fetcher(config: &Config) -> Result<Fetcher> {
    let mut settings = config.fetch.clone();
    let release = DeviceView::read(config)
        .ok()
        .and_then(|view| view.booted_version(config))
        .map_or_else(|| "unknown".to_owned(), |v| v.to_string());
    let channel = config
        .repository
        .as_ref()
        .map_or("none", |r| r.channel.as_str());
    settings.user_agent = format!(
        "ota-update/{} ({}; {release}; {channel})",
        env!("CARGO_PKG_VERSION"),
        config.product
    );
    Fetcher::new(settings).map_err(UpdateError::Fetch)
}

/// The daemon's log: a text line on standard error, or with `--json` a JSON line on standard
/// output: `{"time", "event", "message"}` plus the event's own fields.
struct DaemonLog {
    json: bool,
}

impl DaemonLog {
    fn event(&self, event: &str, message: &str, fields: serde_json::Value) {
        if !self.json {
            eprintln!("ota-update daemon: {message}");
            return;
        }
        let line = ota_core::progress::json_log_line(event, message, fields);
        // A closed standard output must not stop the daemon: the line is lost, nothing else.
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{line}");
    }
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
pub fn daemon(config: &Config, rounds: Option<u64>, json: bool) -> Result<()> {
    let settings = config.daemon.clone();
    let fetcher = device_fetcher(config)?;
    let log = DaemonLog { json };
    let mut failures: u32 = 0;
    let mut round = 0u64;
    loop {
        round += 1;
        let outcome = install_update(config, &fetcher, &|_| {});
        let wait = match outcome {
            Ok((report, Some(installed))) => {
                failures = 0;
                let name = report.update.as_ref().map_or("", |c| c.name.as_str());
                log.event(
                    "installed",
                    &format!("installed {name} {} into slot {}", installed.version, installed.slot),
                    serde_json::json!({"target": name, "version": installed.version.to_string(), "slot": installed.slot}),
                );
                if settings.reboot {
                    log.event(
                        "rebooting",
                        "rebooting into the new slot",
                        serde_json::json!({}),
                    );
                    lifecycle::request_reboot(config)?;
                }
                settings.interval_secs
            }
            Ok((report, None)) => {
                failures = 0;
                if let Some(hold) = &report.held {
                    let message = format!("updates held ({}); idle", hold.reason);
                    log.event("held", &message, serde_json::json!({"reason": hold.reason}));
                } else if let Some(pending) = &report.reboot_pending {
                    let message = format!(
                        "slot {} is installed and waits for a reboot; idle",
                        pending.slot
                    );
                    log.event(
                        "reboot_pending",
                        &message,
                        serde_json::json!({"slot": pending.slot}),
                    );
                } else if log.json {
                    // A heartbeat for machines; people's logs stay quiet when nothing happens.
                    log.event("up_to_date", "no update; idle", serde_json::json!({}));
                }
                settings.interval_secs
            }
            // Not worth retrying until something changes on the device.
            Err(e @ (UpdateError::Busy(_) | UpdateError::Refused(_))) => {
                let message = format!("{e}; trying again later");
                log.event("not_now", &message, serde_json::json!({"exit_code": e.exit_code(), "retry_in_secs": settings.interval_secs}));
                settings.interval_secs
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // Back off from a quarter interval, doubling, capped.
                let base = (settings.interval_secs / 4).max(1);
                let wait = base
                    .saturating_mul(1u64 << failures.min(20))
                    .min(settings.max_backoff_secs);
                let message = format!(
                    "{e} (exit class {}); retrying in about {wait} s",
                    e.exit_code()
                );
                log.event(
                    "failed",
                    &message,
                    serde_json::json!({"exit_code": e.exit_code(), "retry_in_secs": wait}),
                );
                wait
            }
        };
        if rounds.is_some_and(|r| round >= r) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(wait + jitter(settings.jitter_secs)));
    }
}
