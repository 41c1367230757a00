//! U-Boot backend: the boot state lives in the U-Boot environment (single or redundant), which
//! the boot script in docs/updater.md reads and decrements.
//!
//! An environment that was never saved (a fresh board: no copy has a valid CRC) is what U-Boot
//! answers with its built-in default environment, so it reads as that: the variables of the
//! configured `default_env` file (the board's `u-boot-initial-env`), else none, which the boot
//! scripts and [`BootState::from_env_vars`] take as the factory state. Writing the boot state
//! then creates the environment, seeded with that default environment so that U-Boot keeps its
//! `bootcmd` and boot script once it loads the saved copy instead of its default.

use super::ubootenv::{EnvProbe, UbootEnv, UbootEnvConfig};
use super::{
    slot_from_cmdline, write_simulated_cmdline, BootState, Bootloader, InitReport, BOOT_STATE_HELD,
};
use crate::error::{Result, UpdateError};
use crate::fault;
use crate::slot::SlotName;
use std::path::{Path, PathBuf};

/// A U-Boot environment plus the kernel command line that names the booted slot.
pub struct UbootBootloader {
    env: UbootEnvConfig,
    default_env: Option<PathBuf>,
    cmdline: PathBuf,
    slots: Vec<SlotName>,
}

fn bootloader_error(e: impl ToString) -> UpdateError {
    UpdateError::Bootloader(e.to_string())
}

impl UbootBootloader {
    /// A backend on the environment `env`, reading the booted slot from `cmdline`.
    pub fn new(env: UbootEnvConfig, cmdline: &Path, slots: Vec<SlotName>) -> Self {
        Self {
            env,
            default_env: None,
            cmdline: cmdline.to_owned(),
            slots,
        }
    }

    /// Uses the default environment in `path` (the text form of `make u-boot-initial-env`) for
    /// an environment that was never saved.
    pub fn with_default_env(mut self, path: Option<PathBuf>) -> Self {
        self.default_env = path;
        self
    }

    fn probe(&self) -> Result<EnvProbe> {
        UbootEnv::probe(&self.env).map_err(bootloader_error)
    }

    /// U-Boot's built-in default environment as configured, if it is.
    fn default_vars(&self) -> Result<Option<UbootEnv>> {
        let Some(path) = &self.default_env else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            UpdateError::Bootloader(format!(
                "cannot read the default U-Boot environment {}: {e}",
                path.display()
            ))
        })?;
        UbootEnv::parse_text(&text, path)
            .map(Some)
            .map_err(bootloader_error)
    }

    /// Where the copies are, for messages: `FILE at 0x2000 and FILE at 0x6000`.
    fn location(&self) -> String {
        self.env
            .copies
            .iter()
            .map(|(path, offset)| format!("{} at {offset:#x}", path.display()))
            .collect::<Vec<_>>()
            .join(" and ")
    }

    fn copies_word(&self) -> &'static str {
        if self.env.is_redundant() {
            "both copies"
        } else {
            "single copy"
        }
    }

    /// Creates the environment from nothing: every copy, seeded with `base`.
    fn create(&self, base: UbootEnv, state: &BootState) -> Result<()> {
        let env = with_state(base, state)?;
        fault::point("uboot: before env write");
        env.create(&self.env).map_err(bootloader_error)?;
        fault::point("uboot: env written");
        Ok(())
    }

    /// `init-bootloader` on a valid environment: sets the boot variables, keeps the others.
    /// A redundant environment is written twice, each write the usual atomic switch to the
    /// other copy, so both copies end up holding it and a power cut leaves one valid.
    fn init_valid(&self, env: UbootEnv, state: &BootState) -> Result<()> {
        let env = with_state(env, state)?;
        for _ in 0..self.env.copies.len() {
            env.write(&self.env).map_err(bootloader_error)?;
        }
        Ok(())
    }
}

/// What a write of the boot state starts from.
enum WriteBase {
    /// The saved environment (the active copy), rewritten with the new boot state.
    Saved(UbootEnv),
    /// A blank, never-saved area: a new environment is created from the default one.
    Create(UbootEnv),
}

impl UbootBootloader {
    /// The environment a write would start from, or why writing it is not safe (a never-saved
    /// area without `default_env`, or an area with no valid copy that is not blank).
    fn writable_base(&self) -> Result<WriteBase> {
        match self.probe()? {
            EnvProbe::Valid(env) => Ok(WriteBase::Saved(env)),
            EnvProbe::NoValidCopy { blank: true, .. } => {
                let base = self.default_vars()?.ok_or_else(|| {
                    UpdateError::Bootloader(format!(
                        "the U-Boot environment ({}) was never saved, and writing it now would \
                         replace U-Boot's built-in default environment (bootcmd, the boot \
                         script) with the OTA variables alone: set [bootloader] default_env to \
                         the board's u-boot-initial-env, or provision it with `ota-update \
                         init-bootloader`",
                        self.location()
                    ))
                })?;
                Ok(WriteBase::Create(base))
            }
            EnvProbe::NoValidCopy {
                blank: false,
                error,
            } => Err(UpdateError::Bootloader(format!(
                "{error}; the area is not blank, so it is not overwritten implicitly: check \
                 the offsets against fw_env.config, then `ota-update init-bootloader --force`"
            ))),
        }
    }
}

/// `env` with the boot state's variables set.
fn with_state(mut env: UbootEnv, state: &BootState) -> Result<UbootEnv> {
    for (name, value) in state.to_env_vars() {
        env.set(&name, &value).map_err(bootloader_error)?;
    }
    Ok(env)
}

impl Bootloader for UbootBootloader {
    fn name(&self) -> &'static str {
        "uboot"
    }

    fn read_state(&self) -> Result<BootState> {
        let env = match self.probe()? {
            EnvProbe::Valid(env) => env,
            // What U-Boot boots with: its default environment (factory state without one).
            EnvProbe::NoValidCopy { .. } => self.default_vars()?.unwrap_or_default(),
        };
        BootState::from_env_vars(|k| env.get(k).map(str::to_owned), &self.slots)
    }

    fn write_state(&mut self, state: &BootState) -> Result<()> {
        match self.writable_base()? {
            WriteBase::Saved(env) => {
                let env = with_state(env, state)?;
                fault::point("uboot: before env write");
                env.write(&self.env).map_err(bootloader_error)?;
                fault::point("uboot: env written");
                Ok(())
            }
            WriteBase::Create(base) => self.create(base, state),
        }
    }

    fn ensure_writable(&self) -> Result<()> {
        self.writable_base().map(drop)
    }

    fn booted_slot(&self) -> Result<SlotName> {
        slot_from_cmdline(&self.cmdline)
    }

    fn record_simulated_boot(&mut self, slot: &SlotName) -> Result<()> {
        write_simulated_cmdline(&self.cmdline, slot)
    }

    fn uninitialised(&self) -> Option<String> {
        let EnvProbe::NoValidCopy { blank, .. } = self.probe().ok()? else {
            return None;
        };
        let defaults = if self.default_env.is_some() {
            "its built-in default environment (default_env)"
        } else {
            "its built-in default environment, read here as the factory state"
        };
        Some(if blank {
            format!(
                "the U-Boot environment ({}) was never saved: U-Boot boots with {defaults}; \
                 `ota-update init-bootloader` writes it",
                self.location()
            )
        } else {
            format!(
                "no copy of the U-Boot environment ({}) has a valid CRC (corrupted, or offsets \
                 that do not match fw_env.config): U-Boot boots with {defaults}; check the \
                 offsets, then `ota-update init-bootloader --force` rewrites it",
                self.location()
            )
        })
    }

    fn init(&mut self, factory: &BootState, force: bool) -> Result<InitReport> {
        let mut report = InitReport::new(self.name(), factory);
        report.location = format!("{}, {}", self.location(), self.copies_word());
        match self.probe()? {
            EnvProbe::Valid(env) => {
                if let Some(order) = env.get("OTA_ORDER") {
                    if !force {
                        return Err(UpdateError::Refused(format!(
                            "the U-Boot environment already holds OTA_ORDER={order:?}: \
                             {BOOT_STATE_HELD}"
                        )));
                    }
                    report.previous = format!("OTA_ORDER={order:?}, overwritten (--force)");
                } else {
                    report.previous = "a valid environment without boot variables".into();
                }
                self.init_valid(env, factory)?;
            }
            EnvProbe::NoValidCopy { blank, error } => {
                if !blank && !force {
                    return Err(UpdateError::Refused(format!(
                        "{error}; the area is not blank: check the offsets against \
                         fw_env.config, then use --force to overwrite it"
                    )));
                }
                report.previous = if blank {
                    "never saved".into()
                } else {
                    "no valid copy, overwritten (--force)".into()
                };
                let base = match self.default_vars()? {
                    Some(base) => base,
                    None => {
                        report.warnings.push(
                            "no [bootloader] default_env: the new environment holds only the \
                             OTA variables, and U-Boot uses it instead of its built-in default \
                             environment, so bootcmd and the boot script must be added to it \
                             (fw_setenv) unless U-Boot finds them elsewhere"
                                .into(),
                        );
                        UbootEnv::new()
                    }
                };
                self.create(base, factory)?;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const SIZE: usize = 0x1000;

    fn ab() -> Vec<SlotName> {
        vec![SlotName::parse("A").unwrap(), SlotName::parse("B").unwrap()]
    }

    /// A redundant environment at 0 and SIZE of an erased "flash" file.
    fn fresh(dir: &Path) -> (UbootBootloader, PathBuf) {
        let flash = dir.join("flash.img");
        fs::write(&flash, vec![0xffu8; 2 * SIZE]).unwrap();
        let env = UbootEnvConfig::redundant((flash.clone(), 0), (flash.clone(), SIZE as u64), SIZE);
        let bl = UbootBootloader::new(env, &dir.join("cmdline"), ab());
        (bl, flash)
    }

    fn trial_b() -> BootState {
        let mut state = BootState::factory(&ab());
        state.set(&ab()[1], false, 1);
        state.put_first(&ab()[1]);
        state
    }

    #[test]
    fn never_saved_env_reads_as_factory_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (bl, _) = fresh(dir.path());
        assert_eq!(bl.read_state().unwrap(), BootState::factory(&ab()));
        let note = bl.uninitialised().unwrap();
        assert!(note.contains("never saved"), "{note}");
    }

    #[test]
    fn default_env_is_what_a_never_saved_env_boots_with_and_seeds_the_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let (bl, _) = fresh(dir.path());
        let defaults = dir.path().join("u-boot-initial-env");
        fs::write(
            &defaults,
            "bootcmd=run ota_boot\nOTA_ORDER=B A\nOTA_B_GOOD=1\n",
        )
        .unwrap();
        let mut bl = bl.with_default_env(Some(defaults));
        assert_eq!(
            bl.read_state().unwrap().order,
            [ab()[1].clone(), ab()[0].clone()]
        );

        bl.write_state(&trial_b()).unwrap();
        assert_eq!(bl.uninitialised(), None);
        assert_eq!(bl.read_state().unwrap(), trial_b());
        let env = UbootEnv::read(&bl.env).unwrap();
        assert_eq!(env.get("bootcmd"), Some("run ota_boot"));
    }

    #[test]
    fn first_write_without_default_env_is_refused_and_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut bl, flash) = fresh(dir.path());
        let err = bl.write_state(&trial_b()).unwrap_err().to_string();
        assert!(err.contains("default_env"), "{err}");
        assert_eq!(fs::read(&flash).unwrap(), vec![0xffu8; 2 * SIZE]);
    }

    #[test]
    fn garbage_is_never_overwritten_implicitly() {
        let dir = tempfile::tempdir().unwrap();
        let (bl, flash) = fresh(dir.path());
        let defaults = dir.path().join("defaults");
        fs::write(&defaults, "bootcmd=boot\n").unwrap();
        let mut bl = bl.with_default_env(Some(defaults));
        let mut bytes = fs::read(&flash).unwrap();
        bytes[10] = 0;
        fs::write(&flash, &bytes).unwrap();
        assert_eq!(bl.read_state().unwrap(), BootState::factory(&ab()));
        assert!(bl.uninitialised().unwrap().contains("valid CRC"));
        assert!(bl.write_state(&trial_b()).is_err());
        assert_eq!(fs::read(&flash).unwrap(), bytes);
        assert!(matches!(
            bl.init(&BootState::factory(&ab()), false),
            Err(UpdateError::Refused(_))
        ));
        bl.init(&BootState::factory(&ab()), true).unwrap();
        assert_eq!(bl.read_state().unwrap(), BootState::factory(&ab()));
    }

    #[test]
    fn torn_copy_of_a_redundant_env_leaves_the_other_in_charge() {
        let dir = tempfile::tempdir().unwrap();
        let (mut bl, flash) = fresh(dir.path());
        bl.init(&BootState::factory(&ab()), false).unwrap();
        bl.write_state(&trial_b()).unwrap();
        // Tear the newer copy (the second one): the first, older one wins again.
        let mut bytes = fs::read(&flash).unwrap();
        bytes[SIZE + 20] ^= 0x55;
        fs::write(&flash, &bytes).unwrap();
        assert_eq!(bl.uninitialised(), None);
        assert_eq!(bl.read_state().unwrap(), BootState::factory(&ab()));
    }

    #[test]
    fn init_refuses_a_live_boot_state_unless_forced_and_keeps_other_variables() {
        let dir = tempfile::tempdir().unwrap();
        let (mut bl, flash) = fresh(dir.path());
        let report = bl.init(&BootState::factory(&ab()), false).unwrap();
        assert_eq!(report.previous, "never saved");
        assert_eq!(report.warnings.len(), 1);
        let mut env = UbootEnv::read(&bl.env).unwrap();
        env.set("bootcmd", "run ota_boot").unwrap();
        env.write(&bl.env).unwrap();
        bl.write_state(&trial_b()).unwrap();

        let before = fs::read(&flash).unwrap();
        let err = bl.init(&BootState::factory(&ab()), false).unwrap_err();
        assert!(matches!(err, UpdateError::Refused(_)), "{err}");
        assert_eq!(fs::read(&flash).unwrap(), before);

        let report = bl.init(&BootState::factory(&ab()), true).unwrap();
        assert!(report.previous.contains("--force"), "{}", report.previous);
        assert_eq!(bl.read_state().unwrap(), BootState::factory(&ab()));
        // Both copies hold the new environment, other variables kept.
        let bytes = fs::read(&flash).unwrap();
        for copy in [&bytes[..SIZE], &bytes[SIZE..]] {
            let (env, _) = UbootEnv::from_block(copy, true).unwrap();
            assert_eq!(env.get("OTA_ORDER"), Some("A B"));
            assert_eq!(env.get("bootcmd"), Some("run ota_boot"));
        }
    }
}
