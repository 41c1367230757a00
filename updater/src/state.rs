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
    /// Its version.
    pub version: semver::Version,
    /// When it was installed.
    pub installed: u64,
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
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The state directory: `state.json` and the lock file.
pub struct StateStore {
    dir: PathBuf,
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

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Reads the records (empty on a device that never ran the updater).
    pub fn load(&self) -> Result<DeviceState> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| UpdateError::Io {
                context: format!("{} is not a valid state file", path.display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeviceState::default()),
            Err(e) => Err(UpdateError::io(format!("cannot read {}", path.display()))(
                e,
            )),
        }
    }

    /// Replaces the records atomically.
    pub fn save(&self, state: &DeviceState) -> Result<()> {
        let path = self.state_path();
        let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        atomic_write(&path, &bytes)
            .map_err(UpdateError::io(format!("cannot write {}", path.display())))
    }

    /// Takes the updater lock; held until the returned guard is dropped (or the process dies:
    /// the kernel releases flock locks, so a power cut or kill never leaves a stale lock).
    pub fn lock(&self) -> Result<LockGuard> {
        let path = self.dir.join("lock");
        let file = File::create(&path).map_err(UpdateError::io(format!(
            "cannot open lock {}",
            path.display()
        )))?;
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

/// Holds the updater lock.
pub struct LockGuard {
    _file: File,
}
