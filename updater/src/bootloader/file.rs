//! The `file` backend: a simulated boot-counting bootloader whose state is a JSON file,
//! replaced atomically. `ota-update simulate-boot` runs the same selection as the GRUB script.

use super::{BootState, Bootloader};
use crate::error::{Result, UpdateError};
use crate::fault;
use crate::fsutil::atomic_write;
use crate::slot::SlotName;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
struct FileState {
    #[serde(flatten)]
    boot: BootState,
    /// The slot the simulated bootloader booted last (the `ota.slot=` of real backends).
    booted: Option<SlotName>,
}

/// The simulated bootloader.
pub struct FileBootloader {
    path: PathBuf,
    slots: Vec<SlotName>,
}

impl FileBootloader {
    /// A backend keeping its state in `path`.
    pub fn new(path: &Path, slots: Vec<SlotName>) -> Self {
        Self {
            path: path.to_owned(),
            slots,
        }
    }

    fn load(&self) -> Result<FileState> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                UpdateError::Bootloader(format!(
                    "{} is not a valid boot state: {e}",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileState {
                boot: BootState::factory(&self.slots),
                booted: None,
            }),
            Err(e) => Err(UpdateError::Bootloader(format!(
                "cannot read {}: {e}",
                self.path.display()
            ))),
        }
    }

    fn store(&self, state: &FileState) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        fault::point("file-bootloader: before write");
        atomic_write(&self.path, &bytes).map_err(|e| {
            UpdateError::Bootloader(format!("cannot write {}: {e}", self.path.display()))
        })
    }
}

impl Bootloader for FileBootloader {
    fn name(&self) -> &'static str {
        "file"
    }

    fn read_state(&self) -> Result<BootState> {
        Ok(self.load()?.boot)
    }

    fn write_state(&mut self, state: &BootState) -> Result<()> {
        let mut file_state = self.load()?;
        file_state.boot = state.clone();
        self.store(&file_state)
    }

    fn booted_slot(&self) -> Result<SlotName> {
        self.load()?.booted.ok_or_else(|| {
            UpdateError::Bootloader(format!(
                "{} records no boot yet: run `ota-update simulate-boot` first",
                self.path.display()
            ))
        })
    }

    fn record_simulated_boot(&mut self, slot: &SlotName) -> Result<()> {
        let mut file_state = self.load()?;
        file_state.booted = Some(slot.clone());
        self.store(&file_state)
    }
}
