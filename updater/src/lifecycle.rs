//! After the install: what happens at every boot (trial, health check, commit or fall back,
//! rollback detection), the admin's commit and rollback, and the status report.

use crate::bootloader::{self, BootState, SlotBoot};
use crate::config::Config;
use crate::error::{Result, UpdateError};
use crate::health;
use crate::slot::{device_size, hash_prefix, SlotName};
use crate::state::{
    now, DeviceState, ImageRecord, Outcome, OutcomeKind, SlotContent, SlotRecord, StateStore,
};
use serde::Serialize;
use std::process::Command;

/// What `ota-update boot` concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum BootOutcome {
    /// The booted slot was already good; nothing to do.
    Steady {
        /// The booted slot.
        slot: SlotName,
    },
    /// The booted slot was on trial, passed its health check and is now committed.
    Committed {
        /// The slot.
        slot: SlotName,
    },
    /// The booted slot is the old one although the new one was to be tried: recorded.
    RollbackDetected {
        /// The slot that failed.
        failed: SlotName,
        /// The slot running now.
        running: SlotName,
    },
}

/// `ota-update boot`: run early at every boot. A failed health check is recorded and the other
/// slot made to boot next, then returned as [`UpdateError::HealthCheck`]: the caller says so,
/// then reboots ([`request_reboot`]), so that the reason reaches the console before the reset.
pub fn boot(config: &Config) -> Result<BootOutcome> {
    let store = StateStore::open(&config.state_dir)?;
    let _lock = store.lock()?;
    let mut bl = bootloader::open(config)?;
    let booted = bl.booted_slot()?;
    config.check_slot(&booted)?;
    let other = config.other_slot(&booted)?;
    let mut boot = bl.read_state()?;
    let mut state = store.load()?;
    state.last_booted = Some(booted.clone());
    if !state.slots.contains_key(&booted) {
        // First boot of a factory image: remember it as it is now, so that a later admin
        // rollback to it can prove the slot still holds exactly this.
        state
            .slots
            .insert(booted.clone(), factory_record(config, &booted)?);
    }

    if !boot.flags(&booted).good {
        // A trial boot: the health check decides.
        let version = state.slots.get(&booted).and_then(|r| r.version.clone());
        let verdict = match &config.health_check {
            Some(check) => health::run(config, check, &booted, version.as_ref()),
            None => Ok(()),
        };
        return match verdict {
            Ok(()) => {
                commit_slot(&mut boot, &mut state, &booted, "health check passed");
                bl.write_state(&boot)?;
                store.save(&state)?;
                Ok(BootOutcome::Committed { slot: booted })
            }
            Err(reason) => {
                // Record first, then fall back: the failed slot gets no tries and goes last.
                // In this order a power cut in between leaves a slot without tries, which the
                // bootloader skips, and records that explain it; the other order would leave
                // the failure unrecorded and look like an interrupted install.
                mark_failed(
                    &mut state,
                    &booted,
                    format!("health check failed on slot {booted}: {reason}"),
                );
                store.save(&state)?;
                boot.set(&booted, false, 0);
                boot.put_first(&other);
                bl.write_state(&boot)?;
                Err(UpdateError::HealthCheck(format!(
                    "{reason}; slot {other} boots next"
                )))
            }
        };
    }

    let mut outcome = BootOutcome::Steady {
        slot: booted.clone(),
    };
    if let Some(pending) = state.pending.clone() {
        if pending.slot == booted {
            // Committed some other way (by hand) before this boot.
            commit_slot(&mut boot, &mut state, &booted, "committed before this boot");
        } else {
            let flags = boot.flags(&pending.slot);
            let switched = boot.order.first() == Some(&pending.slot);
            if !switched {
                // The install recorded the slot but was cut before its bootloader switch: the
                // slot never booted, so this is an interrupted install, not a failed trial.
                state.pending = None;
                state.last_result = Some(Outcome {
                    kind: OutcomeKind::InstallFailed,
                    slot: pending.slot.clone(),
                    version: Some(pending.version.clone()),
                    reason: format!(
                        "the install of {} into slot {} was interrupted before the bootloader switch; run the install again",
                        pending.version, pending.slot
                    ),
                    at: now(),
                });
            } else if !flags.good && flags.tries == 0 {
                // The bootloader consumed the new slot's try and came back here: the new
                // system crashed, hung, or lost power before it could commit.
                mark_failed(
                    &mut state,
                    &pending.slot,
                    format!(
                        "slot {} ({}) was tried but never committed (crash, hang or power loss during its trial boot); the bootloader fell back to slot {booted}",
                        pending.slot, pending.version
                    ),
                );
                boot.put_first(&booted);
                outcome = BootOutcome::RollbackDetected {
                    failed: pending.slot.clone(),
                    running: booted.clone(),
                };
            }
        }
    }
    // A good slot that booted without being first (the bootloader skipped a slot with no
    // tries) is made first, so the order says what actually boots.
    boot.put_first(&booted);
    // Records before the order: a cut in between must not hide a detected rollback.
    store.save(&state)?;
    if bl.read_state()? != boot {
        bl.write_state(&boot)?;
    }
    Ok(outcome)
}

fn commit_slot(boot: &mut BootState, state: &mut DeviceState, slot: &SlotName, why: &str) {
    boot.set(slot, true, 0);
    boot.put_first(slot);
    state.conclude(
        slot,
        SlotContent::Good,
        OutcomeKind::Committed,
        why.to_owned(),
    );
}

fn mark_failed(state: &mut DeviceState, slot: &SlotName, reason: String) {
    state.conclude(slot, SlotContent::Bad, OutcomeKind::RolledBack, reason);
}

/// The record of a factory slot: its version from the configuration, and the hash of every
/// image device as a whole (the updater does not know the image's own length).
fn factory_record(config: &Config, slot: &SlotName) -> Result<SlotRecord> {
    let mut images = std::collections::BTreeMap::new();
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

/// `ota-update commit`: marks the booted slot good by hand.
pub fn commit(config: &Config) -> Result<SlotName> {
    let store = StateStore::open(&config.state_dir)?;
    let _lock = store.lock()?;
    let mut bl = bootloader::open(config)?;
    let booted = bl.booted_slot()?;
    config.check_slot(&booted)?;
    let mut boot = bl.read_state()?;
    let mut state = store.load()?;
    if !state.slots.contains_key(&booted) {
        state
            .slots
            .insert(booted.clone(), factory_record(config, &booted)?);
    }
    commit_slot(
        &mut boot,
        &mut state,
        &booted,
        "committed by the administrator",
    );
    bl.write_state(&boot)?;
    store.save(&state)?;
    Ok(booted)
}

/// `ota-update rollback`: makes the other slot boot next, only when it holds an image that
/// was good before and still hashes to what was recorded then.
pub fn rollback(config: &Config) -> Result<SlotName> {
    let store = StateStore::open(&config.state_dir)?;
    let _lock = store.lock()?;
    let mut bl = bootloader::open(config)?;
    let booted = bl.booted_slot()?;
    config.check_slot(&booted)?;
    let other = config.other_slot(&booted)?;
    let mut state = store.load()?;
    let record = state.slots.get(&other).cloned().ok_or_else(|| {
        UpdateError::Refused(format!(
            "slot {other} holds nothing the updater knows of; there is nothing to roll back to"
        ))
    })?;
    if record.content != SlotContent::Good {
        return Err(UpdateError::Refused(format!(
            "slot {other} holds {} which is {}, not a known-good image; staying on slot {booted}",
            record
                .version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "an unknown version".into()),
            match record.content {
                SlotContent::Writing => "incompletely written",
                SlotContent::Installed => "installed but never booted",
                SlotContent::Bad => "one that failed its trial",
                SlotContent::Good => "good",
            }
        )));
    }
    for (name, image) in &record.images {
        let device = &config.slots[&other][name];
        let actual = hash_prefix(device, image.size).map_err(|e| UpdateError::Slot {
            slot: other.to_string(),
            reason: format!("cannot read {}: {e}", device.display()),
        })?;
        if actual != image.sha256 {
            return Err(UpdateError::Refused(format!(
                "slot {other} image {name} no longer matches its recorded hash (changed or corrupted since it was good); staying on slot {booted}"
            )));
        }
    }
    let mut boot = bl.read_state()?;
    boot.set(&other, true, 0);
    boot.put_first(&other);
    bl.write_state(&boot)?;
    state.pending = None;
    state.last_result = Some(Outcome {
        kind: OutcomeKind::RolledBack,
        slot: other.clone(),
        version: record.version.clone(),
        reason: format!("administrator rolled back from slot {booted} to slot {other}"),
        at: now(),
    });
    store.save(&state)?;
    Ok(other)
}

/// Runs the configured reboot command. On a device it does not return; in tests and the demo
/// (`reboot_command = ["true"]`) it does.
pub fn request_reboot(config: &Config) -> Result<()> {
    let status = Command::new(&config.reboot_command[0])
        .args(&config.reboot_command[1..])
        .status()
        .map_err(UpdateError::io(format!(
            "cannot run reboot command `{}`",
            config.reboot_command.join(" ")
        )))?;
    if !status.success() {
        return Err(UpdateError::Refused(format!(
            "reboot command `{}` failed with {status}",
            config.reboot_command.join(" ")
        )));
    }
    Ok(())
}

/// `ota-update simulate-boot`: does what the GRUB script does at power-on (pick a slot,
/// consume a try) and records the booted slot. For tests and the demo.
pub fn simulate_boot(config: &Config) -> Result<SlotName> {
    let mut bl = bootloader::open(config)?;
    let mut boot = bl.read_state()?;
    let before = boot.clone();
    let slot = boot
        .select_for_boot()
        .ok_or_else(|| UpdateError::Bootloader("no slot in the boot order".into()))?;
    if boot != before {
        bl.write_state(&boot)?;
    }
    bl.record_simulated_boot(&slot)?;
    Ok(slot)
}

/// One slot in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    /// Slot name.
    pub name: SlotName,
    /// Whether this is the running slot.
    pub booted: bool,
    /// Bootloader flags.
    pub boot: SlotBoot,
    /// What the updater recorded.
    pub record: Option<SlotRecord>,
}

/// The whole status report (`ota-update status`).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Bootloader backend.
    pub bootloader: String,
    /// The running slot, if the bootloader says.
    pub booted: Option<SlotName>,
    /// Why the booted slot is unknown, if it is.
    pub booted_error: Option<String>,
    /// The slot the bootloader will boot next.
    pub next_boot: Option<SlotName>,
    /// The boot order.
    pub order: Vec<SlotName>,
    /// Each slot.
    pub slots: Vec<SlotStatus>,
    /// An update waiting for its trial boot.
    pub pending: Option<crate::state::Pending>,
    /// How the last update or admin action ended.
    pub last_result: Option<Outcome>,
}

/// Gathers the status. Takes no lock: it only reads, and must answer while an install runs.
pub fn status(config: &Config) -> Result<Status> {
    let store = StateStore::open(&config.state_dir)?;
    let bl = bootloader::open(config)?;
    let boot = bl.read_state()?;
    let state = store.load()?;
    let (booted, booted_error) = match bl.booted_slot() {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let slots = config
        .slots
        .keys()
        .map(|name| SlotStatus {
            name: name.clone(),
            booted: booted.as_ref() == Some(name),
            boot: boot.flags(name),
            record: state.slots.get(name).cloned(),
        })
        .collect();
    Ok(Status {
        bootloader: bl.name().to_owned(),
        booted,
        booted_error,
        next_boot: boot.next_boot(),
        order: boot.order.clone(),
        slots,
        pending: state.pending,
        last_result: state.last_result,
    })
}
