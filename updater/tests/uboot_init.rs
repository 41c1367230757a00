//! A fresh board whose U-Boot environment was never saved (the flash is erased, no copy has a
//! valid CRC), through the real `ota-update` CLI: `status` works and says so,
//! `init-bootloader` provisions every copy (checked with Debian's `fw_printenv`), refuses to
//! reset a live boot state without `--force`, and the first install creates the environment
//! seeded with U-Boot's default environment.

// Test helpers unwrap freely: clippy's allow-unwrap-in-tests covers only #[test] functions.
#![allow(clippy::unwrap_used)]

use ota_core::exit;
use ota_core::keys::SigningKey;
use ota_test_support::{expect_one_line_error, sign_rootfs_bundle, tool};
use ota_updater::bootloader::ubootenv::UbootEnv;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ENV_SIZE: usize = 0x4000;
const FLASH_SIZE: usize = 0x10000;
const SLOT_SIZE: u64 = 256 * 1024;
/// Where the copies are in the "flash" file (the second only for a redundant environment).
const OFFSETS: [usize; 2] = [0x2000, 0x2000 + ENV_SIZE];

/// What `make u-boot-initial-env` would give for a board booting the shipped script.
const DEFAULT_ENV: &str = "bootcmd=run ota_boot\nbootdelay=2\nota_part_A=2\nota_part_B=3\n";

struct Board {
    dir: tempfile::TempDir,
    key: SigningKey,
    redundant: bool,
}

impl Board {
    /// An erased flash (all 0xff) holding the environment, slot A booted (`ota.slot=A`).
    fn fresh(redundant: bool, default_env: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let board = Board {
            dir,
            key: SigningKey::generate(),
            redundant,
        };
        fs::write(board.path("flash.img"), vec![0xffu8; FLASH_SIZE]).unwrap();
        fs::write(board.path("vendor.pub"), board.key.verifying_key().to_pem()).unwrap();
        for slot in ["a", "b"] {
            let file = fs::File::create(board.path(&format!("slot-{slot}.rootfs"))).unwrap();
            file.set_len(SLOT_SIZE).unwrap();
        }
        fs::write(board.path("cmdline"), "console=ttyS0 ota.slot=A\n").unwrap();
        fs::write(board.path("u-boot-initial-env"), DEFAULT_ENV).unwrap();
        let copies = board.copies();
        let env: Vec<String> = copies
            .iter()
            .map(|offset| format!("{{ device = \"flash.img\", offset = {offset:#x} }}"))
            .collect();
        let fw_env: String = copies
            .iter()
            .map(|offset| {
                format!(
                    "{} {offset:#x} {ENV_SIZE:#x}\n",
                    board.path("flash.img").display()
                )
            })
            .collect();
        fs::write(board.path("fw_env.config"), fw_env).unwrap();
        let default_env = if default_env {
            "default_env = \"u-boot-initial-env\"\n"
        } else {
            ""
        };
        let config = format!(
            "product = \"acme-router\"\nstate_dir = \"state\"\nfactory_version = \"1.0.0\"\n\
             reboot_command = [\"true\"]\n\n[slots.A]\nrootfs = \"slot-a.rootfs\"\n\n\
             [slots.B]\nrootfs = \"slot-b.rootfs\"\n\n[bootloader]\nbackend = \"uboot\"\n\
             env_size = {ENV_SIZE:#x}\ncmdline = \"cmdline\"\n{default_env}env = [{}]\n\n\
             [trust]\nkeys = [\"vendor.pub\"]\n",
            env.join(", ")
        );
        fs::write(board.path("updater.toml"), config).unwrap();
        board
    }

    fn copies(&self) -> &'static [usize] {
        if self.redundant {
            &OFFSETS
        } else {
            &OFFSETS[..1]
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn flash(&self) -> Vec<u8> {
        fs::read(self.path("flash.img")).unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ota-update"))
            .arg("--config")
            .arg(self.path("updater.toml"))
            .args(args)
            .env_remove("CI")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "ota-update {args:?} failed: {stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }

    /// Runs and expects exit code `code` with a one-line error; returns it.
    fn fails(&self, args: &[&str], code: i32) -> String {
        expect_one_line_error(&self.run(args), args, code)
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"]).0).unwrap()
    }

    /// `fw_printenv -c fw_env.config` on `flash` (the board's flash unless given).
    fn fw_printenv(&self, flash: Option<&Path>) -> String {
        let config = match flash {
            None => self.path("fw_env.config"),
            Some(other) => {
                let text = fs::read_to_string(self.path("fw_env.config")).unwrap();
                let flash = self.path("flash.img").display().to_string();
                let path = self.path("fw_env-other.config");
                fs::write(&path, text.replace(&flash, &other.display().to_string())).unwrap();
                path
            }
        };
        let program = tool("fw_printenv", "libubootenv-tool");
        let out = Command::new(&program)
            .arg("-c")
            .arg(&config)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            out.status.success(),
            "fw_printenv failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `fw_printenv` of each copy alone: the other copy is erased in a scratch flash image.
    fn fw_printenv_each_copy(&self) -> Vec<String> {
        if !self.redundant {
            return vec![self.fw_printenv(None)];
        }
        (0..2)
            .map(|keep| {
                let mut flash = self.flash();
                let erase = OFFSETS[1 - keep];
                flash[erase..erase + ENV_SIZE].fill(0xff);
                let scratch = self.path("flash-one-copy.img");
                fs::write(&scratch, flash).unwrap();
                self.fw_printenv(Some(&scratch))
            })
            .collect()
    }

    /// A signed bundle of release `version` for slot images of `rootfs`.
    fn bundle(&self, version: &str, rootfs: &[u8]) -> PathBuf {
        let path = self.path(&format!("acme-router-{version}.bundle"));
        sign_rootfs_bundle(&self.key, "acme-router", version, rootfs, 64 * 1024, &path);
        path
    }
}

/// The lines of a `fw_printenv` listing, for order-free comparison.
fn vars(listing: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = listing.lines().collect();
    lines.sort_unstable();
    lines
}

const FACTORY: [&str; 5] = [
    "OTA_ORDER=A B",
    "OTA_A_GOOD=1",
    "OTA_A_TRIES=0",
    "OTA_B_GOOD=0",
    "OTA_B_TRIES=0",
];

fn assert_factory(listing: &str) {
    let listed = vars(listing);
    for line in FACTORY {
        assert!(listed.contains(&line), "{line} missing from:\n{listing}");
    }
}

#[test]
fn status_on_a_never_saved_redundant_env_reports_factory_and_uninitialised() {
    let board = Board::fresh(true, false);
    let (text, _) = board.ok(&["status"]);
    assert!(text.contains("booted slot:  A"), "{text}");
    assert!(
        text.contains("next boot:    A (bootloader uboot, order A B)"),
        "{text}"
    );
    assert!(text.contains("not initialised"), "{text}");
    assert!(text.contains("never saved"), "{text}");
    assert!(text.contains("init-bootloader"), "{text}");

    let json = board.status_json();
    let note = json["bootloader_uninitialised"].as_str().unwrap();
    assert!(note.contains("never saved"), "{note}");
    assert_eq!(json["next_boot"], "A");
    // Reading wrote nothing.
    assert_eq!(board.flash(), vec![0xffu8; FLASH_SIZE]);
}

#[test]
fn init_bootloader_writes_both_copies_then_refuses_then_forces() {
    let board = Board::fresh(true, true);
    let (out, warnings) = board.ok(&["init-bootloader"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("OTA_ORDER=\"A B\""), "{out}");
    assert!(out.contains("both copies"), "{out}");
    assert!(out.contains("never saved"), "{out}");
    assert_eq!(warnings, "");

    // Both copies hold the factory state and U-Boot's default environment.
    let flash = board.flash();
    for (copy, listing) in board.fw_printenv_each_copy().iter().enumerate() {
        assert_factory(listing);
        for line in DEFAULT_ENV.lines() {
            assert!(
                listing.contains(line),
                "copy {copy}: {line} missing:\n{listing}"
            );
        }
    }
    // Nothing outside the copies changed.
    assert!(flash[..OFFSETS[0]].iter().all(|&b| b == 0xff));
    assert!(flash[OFFSETS[1] + ENV_SIZE..].iter().all(|&b| b == 0xff));
    let json = board.status_json();
    assert_eq!(json["bootloader_uninitialised"], serde_json::Value::Null);

    // A second init would reset a live boot state: refused, flash byte-identical.
    let err = board.fails(&["init-bootloader"], i32::from(exit::REFUSED));
    assert!(err.contains("OTA_ORDER"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(board.flash(), flash);

    // --force resets it, keeping the other variables, and both copies again agree.
    let mut env = UbootEnv::new();
    for line in DEFAULT_ENV.lines().chain(["OTA_ORDER=B A", "OTA_B_GOOD=1"]) {
        let (name, value) = line.split_once('=').unwrap();
        env.set(name, value).unwrap();
    }
    env.set("serial#", "ACME-0042").unwrap();
    let config = ota_updater::Config::load(&board.path("updater.toml")).unwrap();
    let ota_updater::config::BootloaderConfig::Uboot {
        env: env_config, ..
    } = config.bootloader
    else {
        panic!("not a U-Boot configuration");
    };
    env.write(&env_config).unwrap();
    assert!(board.fw_printenv(None).contains("OTA_ORDER=B A"));

    let (out, _) = board.ok(&["init-bootloader", "--force"]);
    assert!(out.contains("overwritten (--force)"), "{out}");
    for listing in board.fw_printenv_each_copy() {
        assert_factory(&listing);
        assert!(listing.contains("serial#=ACME-0042"), "{listing}");
    }
}

#[test]
fn init_bootloader_on_a_single_copy_env_without_default_env_warns() {
    let board = Board::fresh(false, false);
    let (text, _) = board.ok(&["status"]);
    assert!(text.contains("never saved"), "{text}");

    let (out, warnings) = board.ok(&["init-bootloader"]);
    assert!(out.contains("single copy"), "{out}");
    assert!(warnings.starts_with("ota-update: warning: no [bootloader] default_env"));
    let listing = board.fw_printenv(None);
    assert_factory(&listing);
    assert_eq!(vars(&listing).len(), FACTORY.len(), "{listing}");
    let flash = board.flash();
    assert!(flash[..OFFSETS[0]].iter().all(|&b| b == 0xff));
    assert!(flash[OFFSETS[0] + ENV_SIZE..].iter().all(|&b| b == 0xff));

    board.fails(&["init-bootloader"], i32::from(exit::REFUSED));
    assert_eq!(board.flash(), flash);
    board.ok(&["init-bootloader", "--force"]);
    assert_factory(&board.fw_printenv(None));
}

#[test]
fn first_install_on_a_fresh_board_creates_the_env_from_the_default_env() {
    let board = Board::fresh(true, true);
    board.ok(&["boot", "--no-reboot"]);
    let bundle = board.bundle("2.0.0", &[0x5a; 100_000]);
    board.ok(&["install", bundle.to_str().unwrap()]);

    // The switch went to the new slot, U-Boot's own variables survived the creation.
    let listing = board.fw_printenv(None);
    let listed = vars(&listing);
    for line in DEFAULT_ENV.lines().chain([
        "OTA_ORDER=B A",
        "OTA_A_GOOD=1",
        "OTA_B_GOOD=0",
        "OTA_B_TRIES=1",
    ]) {
        assert!(listed.contains(&line), "{line} missing:\n{listing}");
    }
    let json = board.status_json();
    assert_eq!(json["next_boot"], "B");
    assert_eq!(json["bootloader_uninitialised"], serde_json::Value::Null);
}

#[test]
fn first_install_without_default_env_is_refused_before_the_slot_is_written() {
    let board = Board::fresh(true, false);
    board.ok(&["boot", "--no-reboot"]);
    let bundle = board.bundle("2.0.0", &[0x5a; 100_000]);
    // The switch at the end could not create the environment: the install learns it before
    // the inactive slot is touched (no download and write spent for nothing), and the flash
    // stays erased.
    let err = board.fails(&["install", bundle.to_str().unwrap()], i32::from(exit::IO));
    assert!(err.contains("never saved"), "{err}");
    assert!(err.contains("default_env"), "{err}");
    assert_eq!(board.flash(), vec![0xffu8; FLASH_SIZE]);
    let slot_b = fs::read(board.path("slot-b.rootfs")).unwrap();
    assert!(slot_b.iter().all(|&b| b == 0), "slot B was written");
    let json = board.status_json();
    assert_eq!(json["next_boot"], "A");
    assert!(json["bootloader_uninitialised"].is_string());
    // The refusal is what status reports as the last result.
    let last = &json["last_result"];
    assert_eq!(last["kind"], "install_refused", "{json}");
    let reason = last["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("never saved") && reason.contains("nothing was written"),
        "{reason}"
    );

    // Provisioned, the same install goes through.
    board.ok(&["init-bootloader"]);
    board.ok(&["install", bundle.to_str().unwrap()]);
    assert_eq!(board.status_json()["next_boot"], "B");
}
