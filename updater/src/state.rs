//! The updater's own records in the state directory: what each slot holds, the pending
//! update, and the last result. Written atomically (temp file, fsync, rename, directory fsync).
//!
//! The bootloader environment decides what boots; this file only explains it (versions,
//! hashes, reasons). When the two disagree, the bootloader wins and the records are corrected.

use crate::error::{Result, UpdateError};
use crate::fsutil::atomic_write;
use crate::slot::SlotName;
use ota_core::Sha256Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What a slot holds, as far as the updater knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotContent {
    /// An install started writing it and has not verified it yet: not bootable.
    Writing,
    /// Written and verified by read-back; not yet proven by a boot.
    Installed,
    /// Booted and passed its health check (or was committed by hand, or is the factory image).
    Good,
    /// Failed its trial boot or health check.
    Bad,
}

/// One image as written into a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Bytes written.
    pub size: u64,
    /// Their SHA-256.
    pub sha256: Sha256Digest,
}

/// What the updater recorded about one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    /// The slot's state.
    pub content: SlotContent,
    /// Version of the release in it, if known.
    pub version: Option<semver::Version>,
    /// Images written into it (empty for a factory image the updater never wrote).
    pub images: BTreeMap<String, ImageRecord>,
    /// When the record last changed (seconds since the epoch).
    pub updated: u64,
}

/// An installed update waiting for its trial boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The slot it was installed into.
    pub slot: SlotName,
    /// Its version (unknown only in records rebuilt from the bootloader).
    pub version: Option<semver::Version>,
    /// When it was installed.
    pub installed: u64,
    /// SHA-256 of the repository target it came from, when installed from a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_sha256: Option<String>,
}

/// A release that failed its trial on this device: never installed again without an explicit
/// source (`ota-update install SOURCE`), so a bad release cannot become a reboot loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRelease {
    /// Its version, if known.
    pub version: Option<semver::Version>,
    /// The images it wrote (name → SHA-256).
    pub images: BTreeMap<String, Sha256Digest>,
    /// SHA-256 of the repository target, when it came from a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_sha256: Option<String>,
    /// When it failed (seconds since the epoch).
    pub at: u64,
    /// Why, in one line.
    pub reason: String,
}

/// A hold: the daemon and `install` without a source install nothing it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The release held back, or `None` for every update.
    pub version: Option<semver::Version>,
    /// When it ends by itself (seconds since the epoch); `None` until `release-hold`.
    pub until: Option<u64>,
    /// Why, in one line.
    pub reason: String,
    /// When it was set.
    pub at: u64,
}

impl Hold {
    /// Whether the hold is still in force at `now`.
    pub fn active(&self, now: u64) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// The records were unreadable and were rebuilt from the bootloader state and the slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// When.
    pub at: u64,
    /// Why the old records were refused.
    pub reason: String,
    /// Where the unreadable file was kept for inspection.
    pub kept_as: Option<String>,
}

/// How the last update or admin action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Installed into the inactive slot, waiting for a reboot.
    Installed,
    /// The new slot booted and was committed.
    Committed,
    /// The device went back to the previous slot (failed trial, or admin rollback).
    RolledBack,
    /// An install failed; the running slot and the boot order are untouched.
    InstallFailed,
    /// A bundle was refused before anything was written (signature, product, version, size):
    /// neither slot nor the boot order changed.
    InstallRefused,
}

/// The last outcome, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// What happened.
    pub kind: OutcomeKind,
    /// The slot it concerned.
    pub slot: SlotName,
    /// The version concerned, if known.
    pub version: Option<semver::Version>,
    /// Why, in one line.
    pub reason: String,
    /// When (seconds since the epoch).
    pub at: u64,
}

/// Most failed releases remembered; the oldest is forgotten first.
pub const MAX_FAILED_RELEASES: usize = 16;

/// Everything in `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    /// Per-slot records.
    pub slots: BTreeMap<SlotName, SlotRecord>,
    /// The update waiting for its trial boot.
    pub pending: Option<Pending>,
    /// The last outcome.
    pub last_result: Option<Outcome>,
    /// The slot seen booted by the last `ota-update boot`.
    pub last_booted: Option<SlotName>,
    /// Releases that failed their trial here, oldest first.
    #[serde(default)]
    pub failed_releases: Vec<FailedRelease>,
    /// Holds set by the administrator (or by a rollback or downgrade).
    #[serde(default)]
    pub holds: Vec<Hold>,
    /// Set when these records were rebuilt from the bootloader state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<Recovery>,
    /// The last downgrade that signed rollout metadata authorised (a pulled release left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorised_downgrade: Option<AuthorisedDowngrade>,
}

/// A downgrade authorised by signed rollout metadata, kept for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorisedDowngrade {
    /// The release left (pulled).
    pub from: Option<semver::Version>,
    /// The release moved to.
    pub to: semver::Version,
    /// Why, naming the rollout metadata version that authorised it.
    pub reason: String,
    /// When (seconds since the epoch).
    pub at: u64,
}

impl DeviceState {
    /// Ends a trial or an update of `slot`: records its new content, drops a pending update
    /// for it, and sets the last result.
    pub fn conclude(
        &mut self,
        slot: &SlotName,
        content: SlotContent,
        kind: OutcomeKind,
        reason: String,
    ) {
        let version = self.slots.get_mut(slot).and_then(|record| {
            record.content = content;
            record.updated = now();
            record.version.clone()
        });
        if self.pending.as_ref().is_some_and(|p| &p.slot == slot) {
            self.pending = None;
        }
        self.last_result = Some(Outcome {
            kind,
            slot: slot.clone(),
            version,
            reason,
            at: now(),
        });
    }

    /// Remembers that the release in `slot` failed its trial (before [`Self::conclude`] drops
    /// the pending entry that names its repository target).
    pub fn remember_failure(&mut self, slot: &SlotName, reason: &str) {
        let record = self.slots.get(slot);
        let pending = self.pending.as_ref().filter(|p| &p.slot == slot);
        let failed = FailedRelease {
            version: record
                .and_then(|r| r.version.clone())
                .or_else(|| pending.and_then(|p| p.version.clone())),
            images: record
                .map(|r| {
                    r.images
                        .iter()
                        .map(|(n, i)| (n.clone(), i.sha256))
                        .collect()
                })
                .unwrap_or_default(),
            target_sha256: pending.and_then(|p| p.target_sha256.clone()),
            at: now(),
            reason: reason.to_owned(),
        };
        if let Some(version) = &failed.version {
            self.failed_releases
                .retain(|f| f.version.as_ref() != Some(version));
        }
        self.failed_releases.push(failed);
        let excess = self
            .failed_releases
            .len()
            .saturating_sub(MAX_FAILED_RELEASES);
        self.failed_releases.drain(..excess);
    }

    /// The failure recorded for `version`, if it failed here.
    pub fn failure_of(&self, version: &semver::Version) -> Option<&FailedRelease> {
        self.failed_releases
            .iter()
            .rev()
            .find(|f| f.version.as_ref() == Some(version))
    }

    /// Forgets a failure of `version` (it was installed explicitly and committed).
    pub fn forget_failure(&mut self, version: &semver::Version) {
        self.failed_releases
            .retain(|f| f.version.as_ref() != Some(version));
    }

    /// The hold in force at `now` that covers `version` (a hold of every update covers all).
    pub fn hold_on(&self, version: &semver::Version, now: u64) -> Option<&Hold> {
        self.holds
            .iter()
            .find(|h| h.active(now) && h.version.as_ref().is_none_or(|held| held == version))
    }

    /// The hold of every update in force at `now`, if any.
    pub fn device_hold(&self, now: u64) -> Option<&Hold> {
        self.holds
            .iter()
            .find(|h| h.active(now) && h.version.is_none())
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why the records could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// `state.json` exists but is not a valid state file (truncated, corrupt, a symlink...):
    /// the caller rebuilds the records from the bootloader state.
    Unreadable(String),
    /// Reading failed for another reason (I/O error): nothing to rebuild from, report it.
    Io(UpdateError),
}

/// The state directory: `state.json` and the lock file. Every file in it is opened without
/// following symbolic links, and replaced through a temporary file with a unique name, so a
/// link planted in the directory can neither redirect a write nor be truncated through.
pub struct StateStore {
    dir: PathBuf,
}

/// Opens `path` for reading without following a symbolic link at its last component.
pub fn open_no_follow(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

impl StateStore {
    /// Opens (creating if needed) the state directory.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(UpdateError::io(format!(
            "cannot create state directory {}",
            dir.display()
        )))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Reads the records (empty on a device that never ran the updater).
    pub fn load(&self) -> std::result::Result<DeviceState, LoadError> {
        let path = self.state_path();
        let mut bytes = Vec::new();
        let read = open_no_follow(&path).and_then(|mut f| {
            use std::io::Read;
            // The records are a few KiB; a huge file is as unreadable as a corrupt one.
            f.by_ref().take(MAX_STATE_BYTES + 1).read_to_end(&mut bytes)
        });
        match read {
            Ok(_) if bytes.len() as u64 > MAX_STATE_BYTES => Err(LoadError::Unreadable(format!(
                "{} is larger than {MAX_STATE_BYTES} bytes",
                path.display()
            ))),
            Ok(_) => serde_json::from_slice(&bytes).map_err(|e| {
                LoadError::Unreadable(format!("{} is not a valid state file: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeviceState::default()),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(LoadError::Unreadable(format!(
                "{} is a symbolic link",
                path.display()
            ))),
            Err(e) => Err(LoadError::Io(UpdateError::io(format!(
                "cannot read {}",
                path.display()
            ))(e))),
        }
    }

    /// Moves an unreadable `state.json` aside (kept for inspection) and returns its new name.
    pub fn move_aside(&self) -> Result<Option<PathBuf>> {
        let path = self.state_path();
        let kept = self.dir.join(format!("state.json.unreadable-{}", now()));
        match std::fs::rename(&path, &kept) {
            Ok(()) => {
                crate::fault::io(crate::fault::Io::Rename(&path, &kept));
                Ok(Some(kept))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(UpdateError::io(format!(
                "cannot move the unreadable {} aside",
                path.display()
            ))(e)),
        }
    }

    /// Replaces the records atomically.
    pub fn save(&self, state: &DeviceState) -> Result<()> {
        let path = self.state_path();
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| UpdateError::Io {
            context: format!("cannot encode {}", path.display()),
            source: std::io::Error::other(e),
        })?;
        atomic_write(&path, &bytes)
            .map_err(UpdateError::io(format!("cannot write {}", path.display())))
    }

    /// Takes the updater lock; held until the returned guard is dropped (or the process dies:
    /// the kernel releases flock locks, so a power cut or kill never leaves a stale lock).
    pub fn lock(&self) -> Result<LockGuard> {
        let path = self.dir.join("lock");
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(LockGuard { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(UpdateError::Busy(path.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(UpdateError::io(format!(
                "cannot lock {}",
                path.display()
            ))(e)),
        }
    }
}

/// Largest `state.json` read.
pub const MAX_STATE_BYTES: u64 = 1 << 20;

/// Opens (creating) a lock file without following a link and without truncating anything. A
/// symbolic link in its place is removed (the updater never makes one) and the file made anew.
pub fn open_lock_file(path: &Path) -> Result<File> {
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    let opened = match open() {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            std::fs::remove_file(path).and_then(|()| open())
        }
        other => other,
    };
    opened.map_err(UpdateError::io(format!(
        "cannot open lock {}",
        path.display()
    )))
}

/// Holds the updater lock.
pub struct LockGuard {
    _file: File,
}
