//! GRUB backend: the boot state lives in a grubenv file that the GRUB script in
//! `qemu/grub.cfg` (and docs/updater.md) reads and decrements.

use super::grubenv::GrubEnv;
use super::{slot_from_cmdline, write_simulated_cmdline, BootState, Bootloader};
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
}
