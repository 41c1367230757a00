//! The device: one context, opened once under the updater lock, that owns the state store, the
//! bootloader, the booted and the other slot, the boot state and the records, and changes them
//! only through named transitions. Each transition persists its writes in the order documented
//! in docs/architecture.md ("Crash ordering"), so a power cut between any two writes leaves a
//! device that boots a good slot and records that `ota-update boot` can settle.
//!
//! Read-only commands (`status`, `check`) take a [`DeviceView`] instead: no lock, nothing
//! written, the same record recovery done in memory.

use crate::bootloader::{self, BootState, Bootloader};
use crate::config::{same_device, Config};
use crate::error::{Result, UpdateError};
use crate::slot::{device_size, hash_prefix, SlotName};
use crate::state::{
    now, AuthorisedDowngrade, DeviceState, Hold, ImageRecord, LoadError, LockGuard, Outcome,
    OutcomeKind, Pending, Recovery, SlotContent, SlotRecord, StateStore,
};
use std::collections::BTreeMap;

/// The device, opened for changes (the updater lock is held while it lives).
pub struct Device<'c> {
    config: &'c Config,
    store: StateStore,
    _lock: LockGuard,
    bootloader: Box<dyn Bootloader>,
    booted: SlotName,
    other: SlotName,
    boot: BootState,
    state: DeviceState,
}

/// What an install writes into the target slot, for [`Device::switch_to_trial`].
#[derive(Debug, Clone)]
pub struct Installed {
    /// The release's version.
    pub version: semver::Version,
    /// The images written and verified by read-back.
    pub images: BTreeMap<String, ImageRecord>,
    /// SHA-256 of the repository target, when installed from a repository.
    pub target_sha256: Option<String>,
    /// Why a downgrade is authorised by signed rollout metadata, if it is one.
    pub authorised_downgrade: Option<String>,
}

/// What `ota-update boot` concluded on a booted slot that was already good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Nothing was waiting.
    Steady,
    /// The pending slot was tried and the bootloader came back: recorded as failed.
    RollbackDetected {
        /// The slot that failed.
        failed: SlotName,
    },
}

impl<'c> Device<'c> {
    /// Takes the lock, reads the bootloader and the records; unreadable records are moved
    /// aside and rebuilt from the bootloader state (and saved) before anything else happens.
    pub fn open(config: &'c Config) -> Result<Self> {
        let store = StateStore::open(&config.state_dir)?;
        let lock = store.lock()?;
        let bootloader = bootloader::open(config)?;
        Self::with_bootloader(config, store, lock, bootloader)
    }

    /// [`Device::open`] with a given bootloader (tests wrap the file backend).
    pub fn with_bootloader(
        config: &'c Config,
        store: StateStore,
        lock: LockGuard,
        bootloader: Box<dyn Bootloader>,
    ) -> Result<Self> {
        let booted = bootloader.booted_slot()?;
        config.check_slot(&booted)?;
        let other = config.other_slot(&booted)?;
        let boot = bootloader.read_state()?;
        let state = match store.load() {
            Ok(state) => state,
            Err(LoadError::Io(e)) => return Err(e),
            Err(LoadError::Unreadable(reason)) => {
                let kept = store.move_aside()?;
                let state = rebuild_records(config, &boot, Some(&booted), reason, kept);
                store.save(&state)?;
                state
            }
        };
        Ok(Device {
            config,
            store,
            _lock: lock,
            bootloader,
            booted,
            other,
            boot,
            state,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.config
    }
    /// The running slot.
    pub fn booted(&self) -> &SlotName {
        &self.booted
    }
    /// The slot that is not running (the one installs write).
    pub fn other(&self) -> &SlotName {
        &self.other
    }
    /// The bootloader state as last read or written.
    pub fn boot_state(&self) -> &BootState {
        &self.boot
    }
    /// The records.
    pub fn records(&self) -> &DeviceState {
        &self.state
    }

    /// The device as a read-only view (what `check` decides on).
    pub fn view(&self) -> DeviceView {
        DeviceView {
            bootloader: self.bootloader.name(),
            booted: Ok(self.booted.clone()),
            boot: self.boot.clone(),
            state: self.state.clone(),
            bootloader_uninitialised: self.bootloader.uninitialised(),
        }
    }

    /// The version running now: recorded, else the factory version of the configuration.
    pub fn booted_version(&self) -> Option<semver::Version> {
        booted_version(self.config, &self.state, &self.booted)
    }

    /// Whether the running slot is on trial (booted but not committed).
    pub fn booted_on_trial(&self) -> bool {
        !self.boot.flags(&self.booted).good
    }

    fn write_boot(&mut self, boot: BootState) -> Result<()> {
        if boot != self.boot {
            self.bootloader.write_state(&boot)?;
            self.boot = boot;
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        self.store.save(&self.state)
    }

    /// Notes the booted slot in the records (in memory; saved by the transition that
    /// follows). A factory slot the updater never wrote is hashed once, so that a later admin
    /// rollback to it can prove it still holds exactly this.
    pub fn note_booted(&mut self) -> Result<()> {
        self.state.last_booted = Some(self.booted.clone());
        if !self.state.slots.contains_key(&self.booted) {
            let record = factory_record(self.config, &self.booted)?;
            self.state.slots.insert(self.booted.clone(), record);
        }
        Ok(())
    }

    /// Refuses an install while the running slot is on trial: the other slot is then its only
    /// fallback and must not be overwritten.
    pub fn ensure_installable(&self) -> Result<()> {
        self.ensure_slots_distinct()?;
        if self.booted_on_trial() {
            return Err(UpdateError::Refused(format!(
                "the booted slot {} is still on trial: let `ota-update boot` commit it (or run `ota-update commit`) before installing, so slot {} stays a fallback",
                self.booted, self.other
            )));
        }
        Ok(())
    }

    /// Re-checks, right before a write, that no device of the other slot is a device of the
    /// running one (links can change after the configuration was read: udev renames, a
    /// by-partlabel alias pointed elsewhere).
    fn ensure_slots_distinct(&self) -> Result<()> {
        let running = &self.config.slots[&self.booted];
        for (image, target) in &self.config.slots[&self.other] {
            for (running_image, device) in running {
                if same_device(target, device).unwrap_or(false) {
                    return Err(UpdateError::Config {
                        path: self.config.path.display().to_string(),
                        reason: format!(
                            "[slots.{}] {image} = {} is the same device as the running slot's {running_image} = {}: refusing to overwrite the running system",
                            self.other,
                            target.display(),
                            device.display()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Install, step 1 (before the first byte is written to the other slot). Refused while
    /// the running slot is on trial: the other slot is then its only fallback.
    /// Order: bootloader (the other slot can no longer boot), then records (`writing`).
    pub fn begin_writing(&mut self, version: &semver::Version) -> Result<SlotName> {
        self.ensure_installable()?;
        // The switch at the end must be possible: learn it before the slot is overwritten,
        // and say so in `status` (nothing was written).
        if let Err(err) = self.bootloader.ensure_writable() {
            self.record_refusal(Some(version), &err.to_string());
            return Err(err);
        }
        let target = self.other.clone();
        let mut boot = self.boot.clone();
        boot.make_unbootable(&target);
        boot.put_first(&self.booted);
        self.write_boot(boot)?;
        self.state.slots.insert(
            target.clone(),
            SlotRecord {
                content: SlotContent::Writing,
                version: Some(version.clone()),
                images: BTreeMap::new(),
                updated: now(),
            },
        );
        if self
            .state
            .pending
            .as_ref()
            .is_some_and(|p| p.slot == target)
        {
            self.state.pending = None;
        }
        self.save()?;
        Ok(target)
    }

    /// An install failed after [`Device::begin_writing`]: the reason is recorded (best effort:
    /// the install's own error is what the caller must see). The slot stays unbootable.
    pub fn record_install_failure(&mut self, version: Option<&semver::Version>, reason: &str) {
        self.state.last_result = Some(Outcome {
            kind: OutcomeKind::InstallFailed,
            slot: self.other.clone(),
            version: version.cloned(),
            reason: reason.to_owned(),
            at: now(),
        });
        let _ = self.save();
    }

    /// A bundle was refused before [`Device::begin_writing`]: recorded (best effort) so that
    /// `status` explains it; nothing else changes.
    pub fn record_refusal(&mut self, version: Option<&semver::Version>, reason: &str) {
        self.state.last_result = Some(Outcome {
            kind: OutcomeKind::InstallRefused,
            slot: self.other.clone(),
            version: version.cloned(),
            reason: format!("{reason} (nothing was written)"),
            at: now(),
        });
        let _ = self.save();
    }

    /// Install, last step: the images are written, fsynced and verified by read-back.
    /// Order: records (`installed`, pending, a hold on the release left by a downgrade), then
    /// the switch: one atomic bootloader write giving the slot one try, first in order.
    pub fn switch_to_trial(&mut self, installed: Installed) -> Result<SlotName> {
        let target = self.other.clone();
        let version = installed.version.clone();
        let left = self.booted_version().filter(|left| *left > version);
        if let Some(reason) = &installed.authorised_downgrade {
            self.note_authorised_downgrade(&version, reason);
        }
        if let (Some(left), None) = (left, &installed.authorised_downgrade) {
            // A deliberate downgrade: the release left is not to come back by itself.
            self.hold_release(
                left.clone(),
                format!("left by a manual downgrade to {version}"),
            );
        }
        self.state.slots.insert(
            target.clone(),
            SlotRecord {
                content: SlotContent::Installed,
                version: Some(version.clone()),
                images: installed.images,
                updated: now(),
            },
        );
        self.state.pending = Some(Pending {
            slot: target.clone(),
            version: Some(version.clone()),
            installed: now(),
            target_sha256: installed.target_sha256,
        });
        self.state.last_result = Some(Outcome {
            kind: OutcomeKind::Installed,
            slot: target.clone(),
            version: Some(version),
            reason: match &installed.authorised_downgrade {
                Some(why) => format!("installed into slot {target}; reboot to try it ({why})"),
                None => format!("installed into slot {target}; reboot to try it"),
            },
            at: now(),
        });
        self.save()?;
        let mut boot = self.boot.clone();
        boot.give_trial(&target);
        self.write_boot(boot)?;
        Ok(target)
    }

    /// Commits the running slot (healthy trial, or by hand).
    /// Order: bootloader (good, first), then records. A cut in between leaves a good slot
    /// that the next `boot` finds pending and concludes.
    pub fn commit_booted(&mut self, why: &str) -> Result<()> {
        let booted = self.booted.clone();
        let mut boot = self.boot.clone();
        boot.make_good(&booted);
        boot.put_first(&booted);
        self.write_boot(boot)?;
        if let Some(version) = self
            .state
            .slots
            .get(&booted)
            .and_then(|r| r.version.clone())
        {
            self.state.forget_failure(&version);
        }
        self.state.conclude(
            &booted,
            SlotContent::Good,
            OutcomeKind::Committed,
            why.to_owned(),
        );
        self.save()
    }

    /// The running slot failed its health check: it gets no tries and goes last.
    /// Order: records (failed release remembered), then bootloader. A cut in between leaves a
    /// slot that still has no tries (the bootloader consumed it) and records that explain it.
    pub fn fall_back(&mut self, reason: &str) -> Result<SlotName> {
        let (failed, other) = (self.booted.clone(), self.other.clone());
        let reason = format!("health check failed on slot {failed}: {reason}");
        self.state.remember_failure(&failed, &reason);
        self.state
            .conclude(&failed, SlotContent::Bad, OutcomeKind::RolledBack, reason);
        self.save()?;
        let mut boot = self.boot.clone();
        boot.make_unbootable(&failed);
        boot.put_first(&other);
        self.write_boot(boot)?;
        Ok(other)
    }

    /// `boot` on a slot that was already good: settles a pending update (committed some other
    /// way, never switched to, or tried and failed) and makes the running slot first.
    /// Order: records, then bootloader.
    pub fn settle(&mut self) -> Result<Settled> {
        let booted = self.booted.clone();
        let mut outcome = Settled::Steady;
        if let Some(pending) = self.state.pending.clone() {
            let flags = self.boot.flags(&pending.slot);
            let switched = self.boot.order.first() == Some(&pending.slot);
            let shown = shown_version(pending.version.as_ref());
            if pending.slot == booted {
                self.state.conclude(
                    &booted,
                    SlotContent::Good,
                    OutcomeKind::Committed,
                    "committed before this boot".into(),
                );
            } else if !switched {
                // Recorded but cut before its bootloader switch: never booted, so this is an
                // interrupted install, not a failed trial.
                self.state.pending = None;
                self.state.last_result = Some(Outcome {
                    kind: OutcomeKind::InstallFailed,
                    slot: pending.slot.clone(),
                    version: pending.version.clone(),
                    reason: format!(
                        "the install of {shown} into slot {} was interrupted before the bootloader switch; run the install again",
                        pending.slot
                    ),
                    at: now(),
                });
            } else if !flags.good && flags.tries == 0 {
                // The bootloader consumed the try and came back: crash, hang or power loss.
                let reason = format!(
                    "slot {} ({shown}) was tried but never committed (crash, hang or power loss during its trial boot); the bootloader fell back to slot {booted}",
                    pending.slot
                );
                self.state.remember_failure(&pending.slot, &reason);
                self.state.conclude(
                    &pending.slot,
                    SlotContent::Bad,
                    OutcomeKind::RolledBack,
                    reason,
                );
                outcome = Settled::RollbackDetected {
                    failed: pending.slot.clone(),
                };
            }
        }
        self.save()?;
        let mut boot = self.boot.clone();
        boot.put_first(&booted);
        self.write_boot(boot)?;
        Ok(outcome)
    }

    /// Admin rollback: the other slot boots next, only when it holds an image that was good
    /// and still hashes to what was recorded then. A newer release left is held.
    /// Order: records (hold), then bootloader, then records (result).
    pub fn roll_back(&mut self) -> Result<SlotName> {
        let (booted, other) = (self.booted.clone(), self.other.clone());
        let record = self.verified_good_record(&other)?;
        // The admin chose the release rolled to: a hold on it ends. The release left is held
        // when it is newer (a roll back), so the daemon does not undo the decision; a roll
        // forward leaves nothing the daemon would re-install.
        if let Some(to) = &record.version {
            self.state.holds.retain(|h| h.version.as_ref() != Some(to));
        }
        let left = self.booted_version();
        if let Some(left) = left.filter(|l| record.version.as_ref().is_none_or(|to| l > to)) {
            self.hold_release(
                left,
                format!("left by an administrator rollback to slot {other}"),
            );
        }
        self.save()?;
        let mut boot = self.boot.clone();
        boot.make_good(&other);
        boot.put_first(&other);
        self.write_boot(boot)?;
        self.state.pending = None;
        self.state.last_result = Some(Outcome {
            kind: OutcomeKind::RolledBack,
            slot: other.clone(),
            version: record.version,
            reason: format!("administrator rolled back from slot {booted} to slot {other}"),
            at: now(),
        });
        self.save()?;
        Ok(other)
    }

    /// Whether the other slot holds `version`, recorded good (its hashes are checked again
    /// by [`Device::switch_to_verified`]).
    pub fn other_slot_holds(&self, version: &semver::Version) -> bool {
        self.state
            .slots
            .get(&self.other)
            .is_some_and(|r| r.content == SlotContent::Good && r.version.as_ref() == Some(version))
    }

    /// A downgrade authorised by signed rollout metadata to the release the other slot still
    /// holds: after re-hashing it, the other slot boots next, as good (it was committed
    /// before). Order: records (the reason), then the bootloader switch.
    pub fn switch_to_verified(
        &mut self,
        version: &semver::Version,
        reason: &str,
    ) -> Result<SlotName> {
        self.ensure_installable()?;
        let other = self.other.clone();
        let record = self.verified_good_record(&other)?;
        if record.version.as_ref() != Some(version) {
            return Err(UpdateError::Refused(format!(
                "slot {other} does not hold {version}"
            )));
        }
        self.note_authorised_downgrade(version, reason);
        self.state.pending = None;
        self.state.last_result = Some(Outcome {
            kind: OutcomeKind::RolledBack,
            slot: other.clone(),
            version: Some(version.clone()),
            reason: format!("switched back to slot {other}: {reason}"),
            at: now(),
        });
        self.save()?;
        let mut boot = self.boot.clone();
        boot.make_good(&other);
        boot.put_first(&other);
        self.write_boot(boot)?;
        Ok(other)
    }

    fn note_authorised_downgrade(&mut self, to: &semver::Version, reason: &str) {
        self.state.authorised_downgrade = Some(AuthorisedDowngrade {
            from: self.booted_version(),
            to: to.clone(),
            reason: reason.to_owned(),
            at: now(),
        });
    }

    fn verified_good_record(&self, slot: &SlotName) -> Result<SlotRecord> {
        let booted = &self.booted;
        let record = self.state.slots.get(slot).cloned().ok_or_else(|| {
            UpdateError::Refused(format!(
                "slot {slot} holds nothing the updater knows of; there is nothing to roll back to"
            ))
        })?;
        if record.content != SlotContent::Good || record.images.is_empty() {
            return Err(UpdateError::Refused(format!(
                "slot {slot} holds {} which is {}, not a known-good image; staying on slot {booted}",
                shown_version(record.version.as_ref()),
                match record.content {
                    SlotContent::Writing => "incompletely written",
                    SlotContent::Installed => "installed but never booted",
                    SlotContent::Bad => "one that failed its trial",
                    SlotContent::Good => "without recorded image hashes",
                }
            )));
        }
        for (name, image) in &record.images {
            let device = self.config.slots[slot].get(name).ok_or_else(|| {
                UpdateError::Refused(format!("slot {slot} has no device for image {name}"))
            })?;
            let actual = hash_prefix(device, image.size).map_err(|e| UpdateError::Slot {
                slot: slot.to_string(),
                reason: format!("cannot read {}: {e}", device.display()),
            })?;
            if actual != image.sha256 {
                return Err(UpdateError::Refused(format!(
                    "slot {slot} image {name} no longer matches its recorded hash (changed or corrupted since it was good); staying on slot {booted}"
                )));
            }
        }
        Ok(record)
    }

    fn hold_release(&mut self, version: semver::Version, reason: String) {
        self.state
            .holds
            .retain(|h| h.version.as_ref() != Some(&version));
        self.state.holds.push(Hold {
            version: Some(version),
            until: None,
            reason,
            at: now(),
        });
    }

    /// `ota-update hold`: no update is installed without a source until `until` (or until
    /// released). Records only.
    pub fn hold_updates(&mut self, until: Option<u64>, reason: &str) -> Result<()> {
        self.state.holds.retain(|h| h.version.is_some());
        self.state.holds.push(Hold {
            version: None,
            until,
            reason: reason.to_owned(),
            at: now(),
        });
        self.save()
    }

    /// `ota-update release-hold`: removes every hold (or only the one on `version`) and
    /// returns the holds removed. Records only.
    pub fn release_holds(&mut self, version: Option<&semver::Version>) -> Result<Vec<Hold>> {
        let (released, kept) = std::mem::take(&mut self.state.holds)
            .into_iter()
            .partition(|h| version.is_none() || h.version.as_ref() == version);
        self.state.holds = kept;
        self.save()?;
        Ok(released)
    }
}

/// The device as read, without the lock: for `status` and `check`.
#[derive(Debug, Clone)]
pub struct DeviceView {
    /// Bootloader backend name.
    pub bootloader: &'static str,
    /// The running slot, or why it is unknown.
    pub booted: std::result::Result<SlotName, String>,
    /// The bootloader state.
    pub boot: BootState,
    /// The records (rebuilt in memory when unreadable; the next locked command saves them).
    pub state: DeviceState,
    /// Why the bootloader environment counts as never initialised, if it does.
    pub bootloader_uninitialised: Option<String>,
}

impl DeviceView {
    /// Reads the device. Takes no lock: it only reads, and must answer while an install runs.
    pub fn read(config: &Config) -> Result<Self> {
        let store = StateStore::open(&config.state_dir)?;
        let bootloader = bootloader::open(config)?;
        let boot = bootloader.read_state()?;
        let booted = bootloader
            .booted_slot()
            .and_then(|s| config.check_slot(&s).map(|()| s))
            .map_err(|e| e.to_string());
        let state = match store.load() {
            Ok(state) => state,
            Err(LoadError::Io(e)) => return Err(e),
            Err(LoadError::Unreadable(reason)) => rebuild_records(
                config,
                &boot,
                booted.as_ref().ok(),
                format!(
                    "{reason} (rebuilt in memory; the next `ota-update boot` or install saves it)"
                ),
                None,
            ),
        };
        Ok(DeviceView {
            bootloader: bootloader.name(),
            bootloader_uninitialised: bootloader.uninitialised(),
            booted,
            boot,
            state,
        })
    }

    /// The running slot, or a bootloader error saying why it is unknown.
    pub fn booted_slot(&self) -> Result<&SlotName> {
        self.booted
            .as_ref()
            .map_err(|e| UpdateError::Bootloader(e.clone()))
    }

    /// The running version: recorded, else the configuration's factory version.
    pub fn booted_version(&self, config: &Config) -> Option<semver::Version> {
        let booted = self.booted.as_ref().ok()?;
        booted_version(config, &self.state, booted)
    }

    /// An installed release waiting for its reboot: the pending record, when the bootloader
    /// really tries that slot next.
    pub fn reboot_pending(&self) -> Option<&Pending> {
        self.state.pending.as_ref().filter(|p| {
            let flags = self.boot.flags(&p.slot);
            self.boot.order.first() == Some(&p.slot) && !flags.good && flags.tries > 0
        })
    }
}

fn booted_version(
    config: &Config,
    state: &DeviceState,
    booted: &SlotName,
) -> Option<semver::Version> {
    match state.slots.get(booted) {
        Some(record) if record.version.is_some() => record.version.clone(),
        // Records rebuilt from the bootloader know no version: the factory version would be a
        // guess, possibly an old one that lets the device "upgrade" to what it runs.
        _ if state.recovered.is_some() => None,
        _ => config.factory_version.clone(),
    }
}

fn shown_version(version: Option<&semver::Version>) -> String {
    version.map_or_else(|| "an unknown version".to_owned(), |v| v.to_string())
}

/// Records rebuilt from the bootloader state when `state.json` is unreadable: a good slot is
/// `good`, a slot with tries is `installed` (pending when the bootloader tries it next), any
/// other is `bad`; versions and image hashes are unknown, so no rollback is offered to a
/// rebuilt slot (it cannot be proved intact) and the running version is unknown until the
/// next install records it.
pub fn rebuild_records(
    config: &Config,
    boot: &BootState,
    booted: Option<&SlotName>,
    reason: String,
    kept_as: Option<std::path::PathBuf>,
) -> DeviceState {
    let mut state = DeviceState {
        recovered: Some(Recovery {
            at: now(),
            reason,
            kept_as: kept_as.map(|p| p.display().to_string()),
        }),
        last_booted: booted.cloned(),
        ..DeviceState::default()
    };
    for slot in config.slots.keys() {
        let flags = boot.flags(slot);
        let content = if flags.good {
            SlotContent::Good
        } else if flags.tries > 0 || Some(slot) == booted {
            SlotContent::Installed
        } else {
            SlotContent::Bad
        };
        state.slots.insert(
            slot.clone(),
            SlotRecord {
                content,
                version: None,
                images: BTreeMap::new(),
                updated: now(),
            },
        );
        // A slot given a trial (first in order, not good) is the pending update; so is one
        // whose try the bootloader already consumed while another slot runs: `boot` then
        // reports the fall-back as for any failed trial.
        let first = boot.order.first() == Some(slot);
        if first && !flags.good && Some(slot) != booted {
            state.pending = Some(Pending {
                slot: slot.clone(),
                version: None,
                installed: now(),
                target_sha256: None,
            });
        }
    }
    state
}

/// The record of a factory slot: its version from the configuration, and the hash of every
/// image device as a whole (the updater does not know the image's own length).
fn factory_record(config: &Config, slot: &SlotName) -> Result<SlotRecord> {
    let mut images = BTreeMap::new();
    for (name, device) in &config.slots[slot] {
        let slot_err = |e: std::io::Error| UpdateError::Slot {
            slot: slot.to_string(),
            reason: format!("cannot read {}: {e}", device.display()),
        };
        let size = device_size(device).map_err(slot_err)?;
        let sha256 = hash_prefix(device, size).map_err(slot_err)?;
        images.insert(name.clone(), ImageRecord { size, sha256 });
    }
    Ok(SlotRecord {
        content: SlotContent::Good,
        version: config.factory_version.clone(),
        images,
        updated: now(),
    })
}

/// The crash ordering of every transition, with the `file` bootloader: each test cuts the power
/// between a transition's two durable writes (the first persisted, the second lost) and checks
/// that the device boots a good slot and that the records `boot` settles explain it.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bootloader::file::FileBootloader;
    use crate::bootloader::InitReport;
    use crate::state::SlotContent;

    /// The file bootloader, whose writes are lost: a power cut right before the bootloader
    /// write of a transition whose records went first.
    struct CutBeforeBootloaderWrite(FileBootloader);

    impl Bootloader for CutBeforeBootloaderWrite {
        fn name(&self) -> &'static str {
            "file"
        }
        fn read_state(&self) -> Result<BootState> {
            self.0.read_state()
        }
        fn write_state(&mut self, _: &BootState) -> Result<()> {
            Err(UpdateError::Bootloader("power cut".into()))
        }
        fn booted_slot(&self) -> Result<SlotName> {
            self.0.booted_slot()
        }
        fn record_simulated_boot(&mut self, slot: &SlotName) -> Result<()> {
            self.0.record_simulated_boot(slot)
        }
        fn init(&mut self, factory: &BootState, force: bool) -> Result<InitReport> {
            self.0.init(factory, force)
        }
    }

    struct Rig {
        dir: tempfile::TempDir,
        config: Config,
    }

    fn slot(name: &str) -> SlotName {
        SlotName::parse(name).unwrap()
    }

    impl Rig {
        /// A device booted on slot A (factory 1.0.0).
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let key = ota_core::keys::SigningKey::generate();
            std::fs::write(dir.path().join("k.pub"), key.verifying_key().to_pem()).unwrap();
            std::fs::write(dir.path().join("a.img"), vec![1u8; 4096]).unwrap();
            std::fs::write(dir.path().join("b.img"), vec![0u8; 4096]).unwrap();
            let text = "product = \"p\"\nstate_dir = \"state\"\nfactory_version = \"1.0.0\"\n\
                [slots.A]\nrootfs = \"a.img\"\n[slots.B]\nrootfs = \"b.img\"\n\
                [bootloader]\nbackend = \"file\"\npath = \"boot.json\"\n[trust]\nkeys = [\"k.pub\"]\n";
            let config = Config::parse(text, &dir.path().join("u.toml")).unwrap();
            let rig = Rig { dir, config };
            rig.power_on();
            rig
        }

        fn bootloader(&self) -> FileBootloader {
            FileBootloader::new(
                &self.dir.path().join("boot.json"),
                vec![slot("A"), slot("B")],
            )
        }

        fn open(&self) -> Device<'_> {
            Device::open(&self.config).unwrap()
        }

        /// The device with a bootloader that loses its next write.
        fn open_cut(&self) -> Device<'_> {
            let store = StateStore::open(&self.config.state_dir).unwrap();
            let lock = store.lock().unwrap();
            let bl = Box::new(CutBeforeBootloaderWrite(self.bootloader()));
            Device::with_bootloader(&self.config, store, lock, bl).unwrap()
        }

        /// Power on: the bootloader picks a slot (as the boot scripts do), then what
        /// `ota-update boot` does on a slot that is good.
        fn power_on(&self) -> SlotName {
            let mut bl = self.bootloader();
            let mut boot = bl.read_state().unwrap();
            let chosen = boot.select_for_boot().unwrap();
            bl.write_state(&boot).unwrap();
            bl.record_simulated_boot(&chosen).unwrap();
            chosen
        }

        fn state_bytes(&self) -> Vec<u8> {
            std::fs::read(self.config.state_dir.join("state.json")).unwrap_or_default()
        }

        /// Undoes the records write of the transition just run: the cut fell after the
        /// bootloader write.
        fn lose_records_since(&self, before: &[u8]) {
            std::fs::write(self.config.state_dir.join("state.json"), before).unwrap();
        }

        /// Installs version `v` into B (records `installed`, bootloader switched).
        fn install(&self, v: &str) {
            let mut device = self.open();
            device.note_booted().unwrap();
            let version = semver::Version::parse(v).unwrap();
            device.begin_writing(&version).unwrap();
            std::fs::write(self.dir.path().join("b.img"), vec![2u8; 4096]).unwrap();
            let sha256 = ota_core::Sha256Digest::of(&[2u8; 4096]);
            let images = [("rootfs".to_owned(), ImageRecord { size: 4096, sha256 })].into();
            device
                .switch_to_trial(Installed {
                    version,
                    images,
                    target_sha256: None,
                    authorised_downgrade: None,
                })
                .unwrap();
        }
    }

    #[test]
    fn begin_writing_cut_before_its_records_leaves_nothing_bootable_in_the_target() {
        let rig = Rig::new();
        rig.install("2.0.0");
        assert_eq!(rig.power_on(), slot("B"));
        rig.open().commit_booted("test").unwrap();
        // Back on A by hand, then a new install starts writing B and the power goes.
        assert_eq!(rig.open().roll_back().unwrap(), slot("A"));
        assert_eq!(rig.power_on(), slot("A"));
        let before = rig.state_bytes();
        rig.open()
            .begin_writing(&semver::Version::new(3, 0, 0))
            .unwrap();
        rig.lose_records_since(&before);
        // The install wrote some bytes before the cut.
        let mut b = std::fs::read(rig.dir.path().join("b.img")).unwrap();
        b[..100].fill(9);
        std::fs::write(rig.dir.path().join("b.img"), b).unwrap();
        // The records still call B good, but the bootloader never boots it and a rollback
        // to it is refused: its bytes no longer match.
        assert_eq!(rig.power_on(), slot("A"));
        assert!(matches!(
            rig.open().roll_back(),
            Err(UpdateError::Refused(_))
        ));
    }

    #[test]
    fn switch_cut_before_the_bootloader_write_is_an_interrupted_install() {
        let rig = Rig::new();
        let mut device = rig.open_cut();
        device.note_booted().unwrap();
        let version = semver::Version::new(2, 0, 0);
        // begin_writing's bootloader write is a no-op here (B is already unbootable).
        device.begin_writing(&version).unwrap();
        let images = BTreeMap::new();
        let cut = device.switch_to_trial(Installed {
            version,
            images,
            target_sha256: None,
            authorised_downgrade: None,
        });
        assert!(cut.is_err());
        drop(device);
        assert_eq!(rig.power_on(), slot("A"));
        let mut device = rig.open();
        assert_eq!(device.settle().unwrap(), Settled::Steady);
        let result = device.records().last_result.clone().unwrap();
        assert_eq!(result.kind, OutcomeKind::InstallFailed);
        assert!(result
            .reason
            .contains("interrupted before the bootloader switch"));
    }

    #[test]
    fn fall_back_cut_before_the_bootloader_write_still_boots_the_old_slot() {
        let rig = Rig::new();
        rig.install("2.0.0");
        assert_eq!(rig.power_on(), slot("B"));
        let mut device = rig.open_cut();
        assert!(device.booted_on_trial());
        assert!(device.fall_back("test says no").is_err());
        drop(device);
        // B's one try was consumed by the bootloader: it is skipped.
        assert_eq!(rig.power_on(), slot("A"));
        let mut device = rig.open();
        device.settle().unwrap();
        let failed = &device.records().failed_releases;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].version, Some(semver::Version::new(2, 0, 0)));
        assert_eq!(device.records().slots[&slot("B")].content, SlotContent::Bad);
    }

    #[test]
    fn commit_cut_before_its_records_is_concluded_at_the_next_boot() {
        let rig = Rig::new();
        rig.install("2.0.0");
        assert_eq!(rig.power_on(), slot("B"));
        let before = rig.state_bytes();
        rig.open().commit_booted("health check passed").unwrap();
        rig.lose_records_since(&before);
        assert_eq!(rig.power_on(), slot("B"));
        let mut device = rig.open();
        assert!(!device.booted_on_trial());
        device.settle().unwrap();
        assert_eq!(device.records().pending, None);
        assert_eq!(
            device.records().slots[&slot("B")].content,
            SlotContent::Good
        );
    }

    #[test]
    fn settle_cut_before_the_bootloader_write_keeps_the_detected_rollback() {
        let rig = Rig::new();
        rig.install("2.0.0");
        assert_eq!(rig.power_on(), slot("B"));
        // The trial crashed before `boot`: the bootloader falls back to A.
        assert_eq!(rig.power_on(), slot("A"));
        let mut device = rig.open_cut();
        assert!(device.settle().is_err());
        drop(device);
        assert_eq!(rig.power_on(), slot("A"));
        let mut device = rig.open();
        device.settle().unwrap();
        assert_eq!(device.records().failed_releases.len(), 1);
        assert_eq!(device.boot_state().order.first(), Some(&slot("A")));
    }

    #[test]
    fn rollback_cut_before_the_bootloader_write_holds_but_keeps_running() {
        let rig = Rig::new();
        rig.install("2.0.0");
        assert_eq!(rig.power_on(), slot("B"));
        rig.open().commit_booted("ok").unwrap();
        assert!(rig.open_cut().roll_back().is_err());
        assert_eq!(rig.power_on(), slot("B"));
        let device = rig.open();
        let held = semver::Version::new(2, 0, 0);
        assert!(device.records().hold_on(&held, now()).is_some());
        // The rollback itself can still be done.
        drop(device);
        assert_eq!(rig.open().roll_back().unwrap(), slot("A"));
        assert_eq!(rig.power_on(), slot("A"));
    }
}
