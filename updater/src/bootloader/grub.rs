//! GRUB backend: the boot state lives in a grubenv file that the GRUB script in
//! `qemu/grub.cfg` (and docs/updater.md) reads and decrements.

use super::grubenv::GrubEnv;
use super::{
    slot_from_cmdline, write_simulated_cmdline, BootState, Bootloader, InitReport, BOOT_STATE_HELD,
};
use crate::error::{Result, UpdateError};
use crate::fault;
use crate::slot::SlotName;
use std::path::{Path, PathBuf};

/// A grubenv file plus the kernel command line that names the booted slot.
pub struct GrubBootloader {
    grubenv: PathBuf,
    cmdline: PathBuf,
    slots: Vec<SlotName>,
}

impl GrubBootloader {
    /// A backend on `grubenv`, reading the booted slot from `cmdline`.
    pub fn new(grubenv: &Path, cmdline: &Path, slots: Vec<SlotName>) -> Self {
        Self {
            grubenv: grubenv.to_owned(),
            cmdline: cmdline.to_owned(),
            slots,
        }
    }

    fn load(&self) -> Result<GrubEnv> {
        if !self.grubenv.exists() {
            return Ok(GrubEnv::new());
        }
        GrubEnv::read(&self.grubenv).map_err(|e| UpdateError::Bootloader(e.to_string()))
    }
}

impl Bootloader for GrubBootloader {
    fn name(&self) -> &'static str {
        "grub"
    }

    fn read_state(&self) -> Result<BootState> {
        let env = self.load()?;
        BootState::from_env_vars(|k| env.get(k).map(str::to_owned), &self.slots)
    }

    fn write_state(&mut self, state: &BootState) -> Result<()> {
        // Keep whatever else the environment holds (other tools' variables).
        let mut env = self.load()?;
        for (name, value) in state.to_env_vars() {
            env.set(&name, &value)
                .map_err(|e| UpdateError::Bootloader(e.to_string()))?;
        }
        fault::point("grub: before env write");
        // One 1024-byte block rewritten in place and fsynced: a single sector-sized write,
        // which is what GRUB's own save_env does.
        env.write(&self.grubenv)
            .map_err(|e| UpdateError::Bootloader(e.to_string()))?;
        fault::point("grub: env written");
        Ok(())
    }

    fn booted_slot(&self) -> Result<SlotName> {
        slot_from_cmdline(&self.cmdline)
    }

    fn record_simulated_boot(&mut self, slot: &SlotName) -> Result<()> {
        write_simulated_cmdline(&self.cmdline, slot)
    }

    fn uninitialised(&self) -> Option<String> {
        // GRUB's load_env finds nothing and the script boots the factory state, but its
        // save_env cannot create the file: the tries of a trial boot need it to exist.
        matches!(self.grubenv.try_exists(), Ok(false)).then(|| {
            format!(
                "the grubenv {} does not exist: GRUB boots the factory state; `ota-update \
                 init-bootloader` creates it",
                self.grubenv.display()
            )
        })
    }

    fn init(&mut self, factory: &BootState, force: bool) -> Result<InitReport> {
        let mut report = InitReport::new(self.name(), factory);
        report.location = self.grubenv.display().to_string();
        let existed = self.grubenv.exists();
        // An existing file must parse as a grubenv (load refuses anything else), even with
        // --force: a wrong path must never clobber another file.
        let env = self.load()?;
        report.previous = match env.get("OTA_ORDER") {
            Some(order) if !force => {
                return Err(UpdateError::Refused(format!(
                    "the grubenv {} already holds OTA_ORDER={order:?}: {BOOT_STATE_HELD}",
                    self.grubenv.display()
                )))
            }
            Some(order) => format!("OTA_ORDER={order:?}, overwritten (--force)"),
            None if existed => "a grubenv without boot variables".into(),
            None => "no grubenv (created)".into(),
        };
        self.write_state(factory)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ab() -> Vec<SlotName> {
        vec![SlotName::parse("A").unwrap(), SlotName::parse("B").unwrap()]
    }

    #[test]
    fn init_creates_a_missing_grubenv_and_refuses_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grubenv");
        let mut bl = GrubBootloader::new(&path, &dir.path().join("cmdline"), ab());
        assert!(bl.uninitialised().unwrap().contains("does not exist"));
        let factory = BootState::factory(&ab());
        assert_eq!(
            bl.init(&factory, false).unwrap().previous,
            "no grubenv (created)"
        );
        assert_eq!(bl.uninitialised(), None);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024);
        assert_eq!(GrubEnv::read(&path).unwrap().get("OTA_ORDER"), Some("A B"));

        let before = std::fs::read(&path).unwrap();
        let err = bl.init(&factory, false).unwrap_err();
        assert!(matches!(err, UpdateError::Refused(_)), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(bl.init(&factory, true).is_ok());
        // Something else at the path is never overwritten, even with --force.
        std::fs::write(&path, b"not a grubenv").unwrap();
        assert!(matches!(
            bl.init(&factory, true),
            Err(UpdateError::Bootloader(_))
        ));
    }
}
