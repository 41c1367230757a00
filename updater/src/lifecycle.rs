//! After the install: what happens at every boot (trial, health check, commit or fall back,
//! rollback detection), the admin's commit, rollback and holds, and the status report. Each is
//! one short sequence of [`Device`] transitions.

use crate::bootloader::{self, SlotBoot};
use crate::config::Config;
use crate::device::{Device, DeviceView, Settled};
use crate::error::{Result, UpdateError};
use crate::health;
use crate::journal::InstallJournal;
use crate::slot::SlotName;
use crate::state::{FailedRelease, Hold, Outcome, Pending, Recovery, SlotContent, SlotRecord};
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
    let mut device = Device::open(config)?;
    device.note_booted()?;
    let booted = device.booted().clone();
    if device.booted_on_trial() {
        // A trial boot: the health check decides.
        let version = device
            .records()
            .slots
            .get(&booted)
            .and_then(|r| r.version.clone());
        let verdict = match &config.health_check {
            Some(check) => health::run(config, check, &booted, version.as_ref()),
            None => Ok(()),
        };
        return match verdict {
            Ok(()) => {
                device.commit_booted("health check passed")?;
                Ok(BootOutcome::Committed { slot: booted })
            }
            Err(reason) => {
                let next = device.fall_back(&reason)?;
                Err(UpdateError::HealthCheck(format!(
                    "{reason}; slot {next} boots next"
                )))
            }
        };
    }
    Ok(match device.settle()? {
        Settled::Steady => BootOutcome::Steady { slot: booted },
        Settled::RollbackDetected { failed } => BootOutcome::RollbackDetected {
            failed,
            running: booted,
        },
    })
}

/// `ota-update commit`: marks the booted slot good by hand.
pub fn commit(config: &Config) -> Result<SlotName> {
    let mut device = Device::open(config)?;
    device.note_booted()?;
    device.commit_booted("committed by the administrator")?;
    Ok(device.booted().clone())
}

/// `ota-update rollback`: makes the other slot boot next, only when it holds an image that
/// was good before and still hashes to what was recorded then. The release left is held
/// (`ota-update release-hold` lifts it).
pub fn rollback(config: &Config) -> Result<SlotName> {
    Device::open(config)?.roll_back()
}

/// `ota-update hold`: the daemon and `install` without a source install nothing until
/// `until` (seconds since the epoch) or until `release-hold`.
pub fn hold(config: &Config, until: Option<u64>, reason: &str) -> Result<()> {
    Device::open(config)?.hold_updates(until, reason)
}

/// `ota-update release-hold`: lifts every hold, or only the one on `version`.
pub fn release_hold(config: &Config, version: Option<&semver::Version>) -> Result<Vec<Hold>> {
    Device::open(config)?.release_holds(version)
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
    /// An update installed or being installed, waiting for its trial boot.
    pub pending: Option<Pending>,
    /// True when the pending update is installed and the bootloader tries it at the next boot.
    pub reboot_pending: bool,
    /// How the last update or admin action ended.
    pub last_result: Option<Outcome>,
    /// Releases that failed their trial here (never installed again without a source).
    pub failed_releases: Vec<FailedRelease>,
    /// Holds in force.
    pub holds: Vec<Hold>,
    /// Set when the records were rebuilt from the bootloader state.
    pub recovered: Option<Recovery>,
    /// The last downgrade signed rollout metadata authorised, and by which version.
    pub authorised_downgrade: Option<crate::state::AuthorisedDowngrade>,
    /// Set when the bootloader environment was never initialised (a fresh board): what the
    /// bootloader does then, and how to initialise it.
    pub bootloader_uninitialised: Option<String>,
    /// An interrupted install the next `install` of the same bundle continues (the daemon
    /// does at its next round).
    pub resumable_install: Option<ResumableInstall>,
}

/// An interrupted install, as its journal tells it (claims, checked again on resume).
#[derive(Debug, Clone, Serialize)]
pub struct ResumableInstall {
    /// The release being written.
    pub version: semver::Version,
    /// The slot being written.
    pub slot: SlotName,
    /// Where the bundle came from.
    pub source: String,
    /// Image bytes recorded as durable in the slot.
    pub written_bytes: u64,
    /// Image bytes to write in total.
    pub total_bytes: u64,
    /// When the install started and last made progress (seconds since the epoch).
    pub started: u64,
    /// See `started`.
    pub updated: u64,
}

/// The journal of an interrupted install, when the records still say its slot is being
/// written with its release.
fn resumable_install(config: &Config, view: &DeviceView) -> Option<ResumableInstall> {
    let journal = InstallJournal::load(&config.state_dir)?;
    let record = view.state.slots.get(&journal.slot)?;
    if record.content != SlotContent::Writing || record.version.as_ref() != Some(&journal.version) {
        return None;
    }
    Some(ResumableInstall {
        written_bytes: journal.bytes_written(),
        total_bytes: journal.bytes_total(),
        version: journal.version,
        slot: journal.slot,
        source: journal.source,
        started: journal.started,
        updated: journal.updated,
    })
}

/// Gathers the status. Takes no lock: it only reads, and must answer while an install runs.
pub fn status(config: &Config) -> Result<Status> {
    let view = DeviceView::read(config)?;
    let booted = view.booted.as_ref().ok().cloned();
    let slots = config
        .slots
        .keys()
        .map(|name| SlotStatus {
            name: name.clone(),
            booted: booted.as_ref() == Some(name),
            boot: view.boot.flags(name),
            record: view.state.slots.get(name).cloned(),
        })
        .collect();
    let now = crate::state::now();
    Ok(Status {
        bootloader: view.bootloader.to_owned(),
        booted_error: view.booted.as_ref().err().cloned(),
        booted,
        next_boot: view.boot.next_boot(),
        order: view.boot.order.clone(),
        slots,
        reboot_pending: view.reboot_pending().is_some(),
        pending: view.state.pending.clone(),
        last_result: view.state.last_result.clone(),
        failed_releases: view.state.failed_releases.clone(),
        holds: view
            .state
            .holds
            .iter()
            .filter(|h| h.active(now))
            .cloned()
            .collect(),
        recovered: view.state.recovered.clone(),
        authorised_downgrade: view.state.authorised_downgrade.clone(),
        bootloader_uninitialised: view.bootloader_uninitialised.clone(),
        resumable_install: resumable_install(config, &view),
    })
}
