//! Bootloader backends behind one trait, and the boot-selection semantics they share.
//!
//! Every backend stores the same thing (docs/architecture.md, "The device"): an ordered slot list and, per slot, a
//! *good* flag and a *remaining tries* counter. The bootloader walks the order and boots the
//! first slot that is good, or that has tries left (decrementing them first); see
//! [`BootState::select_for_boot`], which is exactly what the shipped GRUB and U-Boot scripts do.
//!
//! GRUB and U-Boot keep these as environment variables (`OTA_ORDER="A B"`, `OTA_A_GOOD=1`,
//! `OTA_A_TRIES=0`) and tell the kernel which slot they booted with `ota.slot=A` on its command
//! line; the `file` backend keeps them in a JSON file for tests and the demo.

pub mod file;
pub mod grub;
pub mod grubenv;
pub mod init;
pub mod uboot;
pub mod ubootenv;

pub(crate) use init::BOOT_STATE_HELD;
pub use init::{init_environment, InitReport};

use crate::config::{BootloaderConfig, Config};
use crate::error::{Result, UpdateError};
use crate::slot::SlotName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Most tries a slot can be given; the GRUB script's if-chain handles up to this many.
pub const MAX_TRIES: u32 = 3;

/// One slot's boot flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotBoot {
    /// Committed: boots without consuming tries.
    pub good: bool,
    /// Boot attempts left while not good.
    pub tries: u32,
}

/// What the bootloader will do: slot order and per-slot flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootState {
    /// Slots in the order the bootloader tries them.
    pub order: Vec<SlotName>,
    /// Flags per slot.
    pub slots: BTreeMap<SlotName, SlotBoot>,
}

impl BootState {
    /// The state of a freshly provisioned device: slots in configuration order, the first one
    /// good (it holds the factory image), the others empty.
    pub fn factory(slots: &[SlotName]) -> Self {
        BootState {
            order: slots.to_vec(),
            slots: slots
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    (
                        s.clone(),
                        SlotBoot {
                            good: i == 0,
                            tries: 0,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Flags of `slot` (a slot missing from the state counts as not good, no tries).
    pub fn flags(&self, slot: &SlotName) -> SlotBoot {
        self.slots.get(slot).copied().unwrap_or(SlotBoot {
            good: false,
            tries: 0,
        })
    }

    /// Sets the flags of `slot` (the verbs below say what a transition means; this is for
    /// decoding and tests).
    pub fn set(&mut self, slot: &SlotName, good: bool, tries: u32) {
        self.slots.insert(slot.clone(), SlotBoot { good, tries });
    }

    /// `slot` can no longer boot: not good, no tries (it is being written, or it failed).
    pub fn make_unbootable(&mut self, slot: &SlotName) {
        self.set(slot, false, 0);
    }

    /// `slot` is committed: it boots without consuming tries.
    pub fn make_good(&mut self, slot: &SlotName) {
        self.set(slot, true, 0);
    }

    /// `slot` boots next, once, on trial: first in order, not good, one try.
    pub fn give_trial(&mut self, slot: &SlotName) {
        self.set(slot, false, 1);
        self.put_first(slot);
    }

    /// Puts `slot` first in the order, keeping the others' relative order.
    pub fn put_first(&mut self, slot: &SlotName) {
        self.order.retain(|s| s != slot);
        self.order.insert(0, slot.clone());
    }

    /// The slot the bootloader would boot next, without consuming a try.
    pub fn next_boot(&self) -> Option<SlotName> {
        self.clone().select_for_boot()
    }

    /// The boot selection, as the GRUB and U-Boot scripts run it: the first slot in order that
    /// is good, or else has tries left (one is consumed). When no slot qualifies, the first in
    /// order is booted anyway: trying something beats a device that never starts.
    pub fn select_for_boot(&mut self) -> Option<SlotName> {
        for slot in self.order.clone() {
            let flags = self.flags(&slot);
            if flags.good {
                return Some(slot);
            }
            if flags.tries > 0 {
                self.set(&slot, false, flags.tries - 1);
                return Some(slot);
            }
        }
        self.order.first().cloned()
    }

    /// Encodes the state as environment variables (GRUB and U-Boot backends).
    pub fn to_env_vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![(
            "OTA_ORDER".to_owned(),
            self.order
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        )];
        for (slot, flags) in &self.slots {
            vars.push((
                format!("OTA_{slot}_GOOD"),
                if flags.good { "1" } else { "0" }.to_owned(),
            ));
            vars.push((format!("OTA_{slot}_TRIES"), flags.tries.to_string()));
        }
        vars
    }

    /// Decodes the state from environment variables. A device whose environment has no
    /// `OTA_ORDER` yet is a fresh one: [`BootState::factory`], as the boot scripts assume too.
    pub fn from_env_vars(get: impl Fn(&str) -> Option<String>, slots: &[SlotName]) -> Result<Self> {
        let Some(order_text) = get("OTA_ORDER") else {
            return Ok(Self::factory(slots));
        };
        let mut order = Vec::new();
        for word in order_text.split_whitespace() {
            let slot = SlotName::parse(word).map_err(UpdateError::Bootloader)?;
            if !slots.contains(&slot) {
                return Err(UpdateError::Bootloader(format!(
                    "OTA_ORDER names slot {slot}, which is not configured"
                )));
            }
            if !order.contains(&slot) {
                order.push(slot);
            }
        }
        // Slots missing from the order are appended, so none is ever unreachable.
        for slot in slots {
            if !order.contains(slot) {
                order.push(slot.clone());
            }
        }
        let mut state = BootState {
            order,
            slots: BTreeMap::new(),
        };
        for slot in slots {
            let good = match get(&format!("OTA_{slot}_GOOD")).as_deref() {
                None | Some("0") => false,
                Some("1") => true,
                Some(other) => {
                    return Err(UpdateError::Bootloader(format!(
                        "OTA_{slot}_GOOD={other:?} is neither 0 nor 1"
                    )))
                }
            };
            let tries = match get(&format!("OTA_{slot}_TRIES")) {
                None => 0,
                Some(t) => t
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= MAX_TRIES)
                    .ok_or_else(|| {
                        UpdateError::Bootloader(format!(
                            "OTA_{slot}_TRIES={t:?} is not 0..={MAX_TRIES}"
                        ))
                    })?,
            };
            state.set(slot, good, tries);
        }
        Ok(state)
    }
}

/// A bootloader the updater can steer.
pub trait Bootloader {
    /// Short name for messages (`grub`, `uboot`, `file`).
    fn name(&self) -> &'static str;
    /// Reads the current boot state.
    fn read_state(&self) -> Result<BootState>;
    /// Replaces the boot state in one atomic step.
    fn write_state(&mut self, state: &BootState) -> Result<()>;
    /// Fails, without writing anything, when [`Bootloader::write_state`] would refuse to write
    /// (a U-Boot environment that cannot be created safely): asked before an install touches
    /// the slot, so that such a device learns it before downloading and writing an image.
    fn ensure_writable(&self) -> Result<()> {
        Ok(())
    }
    /// The slot the running system was booted from.
    fn booted_slot(&self) -> Result<SlotName>;
    /// Test and demo helper: records that `slot` was booted, as the real bootloader does by
    /// passing `ota.slot=` to the kernel.
    fn record_simulated_boot(&mut self, slot: &SlotName) -> Result<()>;
    /// When the environment was never initialised (nothing saved yet, so the bootloader boots
    /// with its defaults and [`Bootloader::read_state`] reports the factory state): a one-line
    /// explanation for `status`. `None` when it holds a saved environment (or cannot be read:
    /// `read_state` reports that).
    fn uninitialised(&self) -> Option<String> {
        None
    }
    /// Provisioning ([`init_environment`]): writes `factory` into the environment, creating it
    /// if needed and keeping other variables. Refuses ([`UpdateError::Refused`]) an
    /// environment that already holds a boot state unless `force`.
    fn init(&mut self, factory: &BootState, force: bool) -> Result<InitReport>;
}

/// Opens the configured backend.
pub fn open(config: &Config) -> Result<Box<dyn Bootloader>> {
    let slots: Vec<SlotName> = config.slots.keys().cloned().collect();
    Ok(match &config.bootloader {
        BootloaderConfig::Grub { grubenv, cmdline } => {
            Box::new(grub::GrubBootloader::new(grubenv, cmdline, slots))
        }
        BootloaderConfig::Uboot {
            env,
            cmdline,
            default_env,
        } => Box::new(
            uboot::UbootBootloader::new(env.clone(), cmdline, slots)
                .with_default_env(default_env.clone()),
        ),
        BootloaderConfig::File { path } => Box::new(file::FileBootloader::new(path, slots)),
    })
}

/// Reads `ota.slot=NAME` from a kernel command line file.
pub fn slot_from_cmdline(path: &Path) -> Result<SlotName> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UpdateError::Bootloader(format!(
            "cannot read the kernel command line {}: {e}",
            path.display()
        ))
    })?;
    let value = text
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix("ota.slot="))
        .ok_or_else(|| {
            UpdateError::Bootloader(format!(
                "no ota.slot= on the kernel command line ({}): the boot script must pass it",
                path.display()
            ))
        })?;
    SlotName::parse(value).map_err(UpdateError::Bootloader)
}

/// Writes a kernel command line naming `slot` (test helper for the GRUB and U-Boot backends).
pub fn write_simulated_cmdline(path: &Path, slot: &SlotName) -> Result<()> {
    crate::fsutil::atomic_write(path, format!("quiet ota.slot={slot}\n").as_bytes())
        .map_err(|e| UpdateError::Bootloader(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ab() -> Vec<SlotName> {
        vec![SlotName::parse("A").unwrap(), SlotName::parse("B").unwrap()]
    }

    #[test]
    fn trial_slot_gets_one_boot_then_falls_back() {
        let [a, b]: [SlotName; 2] = ab().try_into().unwrap();
        let mut s = BootState::factory(&ab());
        s.set(&b, false, 1);
        s.put_first(&b);
        assert_eq!(s.select_for_boot(), Some(b.clone()));
        assert_eq!(s.flags(&b).tries, 0);
        // Not committed: the next boot falls back to the good slot.
        assert_eq!(s.select_for_boot(), Some(a));
    }

    #[test]
    fn env_vars_round_trip_and_fresh_env_is_factory() {
        let mut s = BootState::factory(&ab());
        s.set(&ab()[1], false, 1);
        s.put_first(&ab()[1]);
        let vars: BTreeMap<String, String> = s.to_env_vars().into_iter().collect();
        assert_eq!(vars["OTA_ORDER"], "B A");
        let back = BootState::from_env_vars(|k| vars.get(k).cloned(), &ab()).unwrap();
        assert_eq!(back, s);
        let fresh = BootState::from_env_vars(|_| None, &ab()).unwrap();
        assert_eq!(fresh, BootState::factory(&ab()));
    }

    #[test]
    fn bad_env_values_are_errors() {
        let vars = |k: &str| match k {
            "OTA_ORDER" => Some("A B".to_owned()),
            "OTA_A_TRIES" => Some("many".to_owned()),
            _ => None,
        };
        assert!(BootState::from_env_vars(vars, &ab()).is_err());
    }
}
