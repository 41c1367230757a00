//! The `file` backend: a simulated boot-counting bootloader whose state is a JSON file,
//! replaced atomically. `ota-update simulate-boot` runs the same selection as the GRUB script.

use super::{BootState, Bootloader, InitReport, BOOT_STATE_HELD};
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

    fn uninitialised(&self) -> Option<String> {
        matches!(self.path.try_exists(), Ok(false)).then(|| {
            format!(
                "{} does not exist yet: the simulated bootloader boots the factory state",
                self.path.display()
            )
        })
    }

    fn init(&mut self, factory: &BootState, force: bool) -> Result<InitReport> {
        let mut report = InitReport::new(self.name(), factory);
        report.location = self.path.display().to_string();
        let existed = self.path.exists();
        let mut file_state = self.load()?;
        if existed {
            let order = file_state
                .boot
                .order
                .iter()
                .map(SlotName::as_str)
                .collect::<Vec<_>>()
                .join(" ");
            if !force {
                return Err(UpdateError::Refused(format!(
                    "{} already holds a boot state (order {order}): {BOOT_STATE_HELD}",
                    self.path.display()
                )));
            }
            report.previous = format!("order {order}, overwritten (--force)");
        } else {
            report.previous = "no state file (created)".into();
        }
        // The simulated `ota.slot=` (the last boot) is kept, like other variables elsewhere.
        file_state.boot = factory.clone();
        self.store(&file_state)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_the_factory_state_and_keeps_the_simulated_boot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootloader.json");
        let slots = vec![SlotName::parse("A").unwrap(), SlotName::parse("B").unwrap()];
        let mut bl = FileBootloader::new(&path, slots.clone());
        assert!(bl.uninitialised().is_some());
        let factory = BootState::factory(&slots);
        bl.init(&factory, false).unwrap();
        assert_eq!(bl.uninitialised(), None);
        bl.record_simulated_boot(&slots[1]).unwrap();
        let mut trial = factory.clone();
        trial.put_first(&slots[1]);
        bl.write_state(&trial).unwrap();

        assert!(matches!(
            bl.init(&factory, false),
            Err(UpdateError::Refused(_))
        ));
        assert_eq!(bl.read_state().unwrap(), trial);
        bl.init(&factory, true).unwrap();
        assert_eq!(bl.read_state().unwrap(), factory);
        assert_eq!(bl.booted_slot().unwrap(), slots[1]);
    }
}
