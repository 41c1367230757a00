//! U-Boot backend: the boot state lives in the U-Boot environment (single or redundant), which
//! the boot script in docs/updater.md reads and decrements.

use super::ubootenv::{UbootEnv, UbootEnvConfig};
use super::{slot_from_cmdline, write_simulated_cmdline, BootState, Bootloader};
use crate::error::{Result, UpdateError};
use crate::fault;
use crate::slot::SlotName;
use std::path::{Path, PathBuf};

/// A U-Boot environment plus the kernel command line that names the booted slot.
pub struct UbootBootloader {
    env: UbootEnvConfig,
    cmdline: PathBuf,
    slots: Vec<SlotName>,
}

impl UbootBootloader {
    /// A backend on the environment `env`, reading the booted slot from `cmdline`.
    pub fn new(env: UbootEnvConfig, cmdline: &Path, slots: Vec<SlotName>) -> Self {
        Self {
            env,
            cmdline: cmdline.to_owned(),
            slots,
        }
    }
}

impl Bootloader for UbootBootloader {
    fn name(&self) -> &'static str {
        "uboot"
    }

    fn read_state(&self) -> Result<BootState> {
        let env = UbootEnv::read(&self.env).map_err(|e| UpdateError::Bootloader(e.to_string()))?;
        BootState::from_env_vars(|k| env.get(k).map(str::to_owned), &self.slots)
    }

    fn write_state(&mut self, state: &BootState) -> Result<()> {
        let mut env =
            UbootEnv::read(&self.env).map_err(|e| UpdateError::Bootloader(e.to_string()))?;
        for (name, value) in state.to_env_vars() {
            env.set(&name, &value)
                .map_err(|e| UpdateError::Bootloader(e.to_string()))?;
        }
        fault::point("uboot: before env write");
        // Redundant environments: the inactive copy is written with a higher flags byte and
        // fsynced; that single write is the switch (see ubootenv.rs).
        env.write(&self.env)
            .map_err(|e| UpdateError::Bootloader(e.to_string()))?;
        fault::point("uboot: env written");
        Ok(())
    }

    fn booted_slot(&self) -> Result<SlotName> {
        slot_from_cmdline(&self.cmdline)
    }

    fn record_simulated_boot(&mut self, slot: &SlotName) -> Result<()> {
        write_simulated_cmdline(&self.cmdline, slot)
    }
}
