//! Provisioning of the bootloader environment (`ota-update init-bootloader`): writes the
//! factory boot state (first configured slot good) that the shipped boot scripts read, refusing
//! to reset a live one unless forced. The per-backend work is [`Bootloader::init`].

use super::{open, BootState, Bootloader};
use crate::config::Config;
use crate::error::Result;
use crate::slot::SlotName;
use crate::state::StateStore;
use serde::Serialize;

/// Why `init-bootloader` refuses an environment that already holds `OTA_ORDER` (the end of the
/// one-line message).
pub(crate) const BOOT_STATE_HELD: &str = "a live boot state, which init-bootloader would reset \
     to the factory one (the first slot good, whatever it holds now); use --force to overwrite it";

/// What [`init_environment`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitReport {
    /// The backend (`grub`, `uboot`, `file`).
    pub backend: &'static str,
    /// Where the environment was written (files, offsets, copies).
    pub location: String,
    /// The boot variables written, in order.
    pub variables: Vec<(String, String)>,
    /// What the environment held before: never saved, valid without boot variables, or a boot
    /// state overwritten with `--force`.
    pub previous: String,
    /// What the operator should know about the result, one line each.
    pub warnings: Vec<String>,
}

impl InitReport {
    /// A report for `backend` writing `state`; the backend fills in the rest.
    pub fn new(backend: &'static str, state: &BootState) -> Self {
        InitReport {
            backend,
            location: String::new(),
            variables: state.to_env_vars(),
            previous: String::new(),
            warnings: Vec::new(),
        }
    }

    /// One line: what was written where, and what was there before.
    pub fn summary(&self) -> String {
        let variables = self
            .variables
            .iter()
            .map(|(name, value)| {
                if value.contains(' ') {
                    format!("{name}=\"{value}\"")
                } else {
                    format!("{name}={value}")
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "wrote the factory boot state {variables} to the {} environment ({}); before: {}",
            self.backend, self.location, self.previous
        )
    }
}

/// `ota-update init-bootloader`: writes the factory boot state (the first configured slot good,
/// the other without tries) into the bootloader environment, creating it when it does not exist
/// or was never saved. An environment that already holds `OTA_ORDER` is refused
/// ([`crate::UpdateError::Refused`]) unless `force`; variables other than the boot ones are kept.
/// Takes the updater lock, so it never races an install or a boot verdict.
pub fn init_environment(config: &Config, force: bool) -> Result<InitReport> {
    let store = StateStore::open(&config.state_dir)?;
    let _lock = store.lock()?;
    let slots: Vec<SlotName> = config.slots.keys().cloned().collect();
    let mut bootloader: Box<dyn Bootloader> = open(config)?;
    bootloader.init(&BootState::factory(&slots), force)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_quotes_the_order() {
        let slots = vec![SlotName::parse("A").unwrap(), SlotName::parse("B").unwrap()];
        let mut report = InitReport::new("uboot", &BootState::factory(&slots));
        report.location = "flash.img at 0x0, single copy".into();
        report.previous = "never saved".into();
        assert_eq!(
            report.summary(),
            "wrote the factory boot state OTA_ORDER=\"A B\" OTA_A_GOOD=1 OTA_A_TRIES=0 \
             OTA_B_GOOD=0 OTA_B_TRIES=0 to the uboot environment (flash.img at 0x0, single \
             copy); before: never saved"
        );
    }
}
