//! The device story through the real `ota-update` CLI, with each bootloader backend:
//! install → trial boot → commit; failed health check → fall back; crash during trial →
//! rollback detected; admin rollback; and every refusal leaving the running slot and the
//! bootloader environment byte-identical. GRUB and U-Boot environments are cross-checked with
//! grub-editenv and fw_printenv.

// Test helpers unwrap freely: clippy's allow-unwrap-in-tests covers only #[test] functions.
#![allow(clippy::unwrap_used)]

use ota_core::bundle::{build_bundle, BuildOptions, ImageInput};
use ota_core::exit;
use ota_core::keys::SigningKey;
use ota_test_support::{
    expect_one_line_error, image_with_bytes, sign_rootfs_bundle, slot_of, tool, updater_toml,
    Server, HEALTH_GOOD_MARKER,
};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const SLOT_SIZE: u64 = 512 * 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    File,
    Grub,
    Uboot,
}

const UBOOT_ENV_SIZE: u64 = 0x4000;

struct Device {
    dir: tempfile::TempDir,
    key: SigningKey,
    backend: Backend,
}

impl Device {
    /// A device whose slot A holds `factory` (release 1.0.0) and has booted once.
    fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        let d = Device { dir, key, backend };
        fs::write(d.path("vendor.pub"), d.key.verifying_key().to_pem()).unwrap();
        for slot in ["a", "b"] {
            let f = fs::File::create(d.path(&format!("slot-{slot}.rootfs"))).unwrap();
            f.set_len(SLOT_SIZE).unwrap();
        }
        let factory = image_with_bytes("GOOD v1", 300_000, 1);
        let mut slot_a = fs::read(d.path("slot-a.rootfs")).unwrap();
        slot_a[..factory.len()].copy_from_slice(&factory);
        fs::write(d.path("slot-a.rootfs"), slot_a).unwrap();
        let bootloader = match backend {
            Backend::File => "backend = \"file\"\npath = \"bootloader.json\"".to_owned(),
            Backend::Grub => {
                run_tool(
                    "grub-editenv",
                    "grub-common",
                    &[d.path("grubenv").to_str().unwrap(), "create"],
                );
                "backend = \"grub\"\ngrubenv = \"grubenv\"\ncmdline = \"cmdline\"".to_owned()
            }
            Backend::Uboot => {
                // A redundant environment at two offsets of one "flash" file, made by mkenvimage.
                fs::write(d.path("vars.txt"), "bootdelay=2\nbootcmd=run ota_boot\n").unwrap();
                let size = format!("{UBOOT_ENV_SIZE}");
                let img = d.path("env.img");
                run_tool(
                    "mkenvimage",
                    "u-boot-tools",
                    &[
                        "-s",
                        &size,
                        "-r",
                        "-p",
                        "0",
                        "-o",
                        img.to_str().unwrap(),
                        d.path("vars.txt").to_str().unwrap(),
                    ],
                );
                let env = fs::read(&img).unwrap();
                let mut flash = vec![0xffu8; 0x10000];
                flash[0x2000..0x2000 + env.len()].copy_from_slice(&env);
                fs::write(d.path("flash.img"), flash).unwrap();
                fs::write(
                    d.path("fw_env.config"),
                    format!(
                        "{0} 0x2000 0x{1:x}\n{0} 0x{2:x} 0x{1:x}\n",
                        d.path("flash.img").display(),
                        UBOOT_ENV_SIZE,
                        0x2000 + UBOOT_ENV_SIZE
                    ),
                )
                .unwrap();
                format!(
                    "backend = \"uboot\"\nenv_size = {UBOOT_ENV_SIZE}\ncmdline = \"cmdline\"\nenv = [{{ device = \"flash.img\", offset = 0x2000 }}, {{ device = \"flash.img\", offset = {} }}]",
                    0x2000 + UBOOT_ENV_SIZE
                )
            }
        };
        fs::write(
            d.path("updater.toml"),
            updater_toml(
                &bootloader,
                &format!("{HEALTH_GOOD_MARKER}\ntimeout_secs = 10"),
            ),
        )
        .unwrap();
        d.ok(&["simulate-boot"]);
        d.ok(&["boot", "--no-reboot"]);
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ota-update"));
        cmd.arg("--config")
            .arg(self.path("updater.toml"))
            .args(args)
            .env_remove("CI")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ota-update {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects exit code `code` with a one-line error.
    fn refused(&self, args: &[&str], code: i32) -> String {
        expect_one_line_error(&self.run(args), args, code)
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    /// Signs a bundle with this device's key (or `key`) for `product`.
    fn bundle(
        &self,
        name: &str,
        product: &str,
        version: &str,
        rootfs: &[u8],
        key: Option<&SigningKey>,
    ) -> PathBuf {
        let out_path = self.path(name);
        let signer = key.unwrap_or(&self.key);
        sign_rootfs_bundle(signer, product, version, rootfs, 64 * 1024, &out_path);
        out_path
    }

    /// The bytes the bootloader decides with.
    fn bootloader_bytes(&self) -> Vec<u8> {
        match self.backend {
            Backend::File => fs::read(self.path("bootloader.json")).unwrap(),
            Backend::Grub => fs::read(self.path("grubenv")).unwrap(),
            Backend::Uboot => fs::read(self.path("flash.img")).unwrap(),
        }
    }

    /// The boot variables as the real tools see them (file backend: our JSON).
    fn tool_view(&self) -> String {
        match self.backend {
            Backend::File => String::new(),
            Backend::Grub => run_tool(
                "grub-editenv",
                "grub-common",
                &[self.path("grubenv").to_str().unwrap(), "list"],
            ),
            Backend::Uboot => run_tool(
                "fw_printenv",
                "libubootenv-tool",
                &["-c", self.path("fw_env.config").to_str().unwrap()],
            ),
        }
    }

    fn slot(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(&format!("slot-{}.rootfs", name.to_lowercase()))).unwrap()
    }
}

fn run_tool(name: &str, package: &str, args: &[&str]) -> String {
    let out = Command::new(tool(name, package))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn full_lifecycle(backend: Backend) {
    let d = Device::new(backend);
    let s = d.status();
    assert_eq!(s["booted"], "A");
    assert_eq!(slot_of(&s, "A")["record"]["content"], "good");
    assert_eq!(slot_of(&s, "A")["record"]["version"], "1.0.0");

    // Install v2 into B: pending, B first with one try, A still good.
    let v2 = image_with_bytes("GOOD v2", 400_000, 2);
    let bundle = d.bundle("v2.bundle", "acme-router", "2.0.0", &v2, None);
    d.ok(&["install", bundle.to_str().unwrap()]);
    let s = d.status();
    assert_eq!(s["pending"]["slot"], "B");
    assert_eq!(s["next_boot"], "B");
    assert_eq!(
        slot_of(&s, "B")["boot"],
        serde_json::json!({"good": false, "tries": 1})
    );
    assert_eq!(slot_of(&s, "A")["boot"]["good"], true);
    assert_eq!(&d.slot("B")[..v2.len()], &v2[..]);
    if backend != Backend::File {
        let view = d.tool_view();
        assert!(view.contains("OTA_ORDER=B A"), "{view}");
        assert!(view.contains("OTA_B_TRIES=1"), "{view}");
    }

    // Reboot: B on trial, healthy, committed.
    assert!(d.ok(&["simulate-boot"]).contains("slot B"));
    assert!(d.ok(&["boot", "--no-reboot"]).contains("committed"));
    let s = d.status();
    assert_eq!(s["booted"], "B");
    assert_eq!(s["pending"], serde_json::Value::Null);
    assert_eq!(
        slot_of(&s, "B")["boot"],
        serde_json::json!({"good": true, "tries": 0})
    );
    assert_eq!(s["last_result"]["kind"], "committed");
    assert_eq!(slot_of(&s, "B")["record"]["version"], "2.0.0");

    // v3 fails its health check: the trial slot is marked bad, the other boots next.
    let v3 = image_with_bytes("BAD! v3", 200_000, 3);
    let bundle = d.bundle("v3.bundle", "acme-router", "3.0.0", &v3, None);
    d.ok(&["install", bundle.to_str().unwrap()]);
    assert!(d.ok(&["simulate-boot"]).contains("slot A"));
    d.refused(&["boot", "--no-reboot"], i32::from(exit::HEALTH_CHECK));
    let s = d.status();
    assert_eq!(s["next_boot"], "B");
    assert_eq!(slot_of(&s, "A")["record"]["content"], "bad");
    assert_eq!(s["last_result"]["kind"], "rolled_back");
    assert!(s["last_result"]["reason"]
        .as_str()
        .unwrap()
        .contains("health check failed"));
    assert!(d.ok(&["simulate-boot"]).contains("slot B"));
    assert!(d.ok(&["boot", "--no-reboot"]).contains("nothing to do"));

    // v4 crashes during its trial (no `boot` runs): the bootloader falls back by itself and
    // the next `boot` on the old slot reports the rollback.
    let v4 = image_with_bytes("GOOD v4", 250_000, 4);
    let bundle = d.bundle("v4.bundle", "acme-router", "4.0.0", &v4, None);
    d.ok(&["install", bundle.to_str().unwrap()]);
    assert!(d.ok(&["simulate-boot"]).contains("slot A"));
    assert!(
        d.ok(&["simulate-boot"]).contains("slot B"),
        "no try left: must fall back"
    );
    assert!(d.ok(&["boot", "--no-reboot"]).contains("rollback detected"));
    let s = d.status();
    assert_eq!(s["last_result"]["kind"], "rolled_back");
    assert!(s["last_result"]["reason"]
        .as_str()
        .unwrap()
        .contains("never committed"));
    assert_eq!(slot_of(&s, "A")["record"]["content"], "bad");

    // Admin rollback to A is refused: it holds the failed v4.
    let stderr = d.refused(&["rollback"], i32::from(exit::REFUSED));
    assert!(stderr.contains("failed its trial"), "{stderr}");

    // A good v5 into A, committed; then the admin rolls back to B (v2), verified by hash.
    let v5 = image_with_bytes("GOOD v5", 100_000, 5);
    let bundle = d.bundle("v5.bundle", "acme-router", "5.0.0", &v5, None);
    d.ok(&["install", bundle.to_str().unwrap()]);
    d.ok(&["simulate-boot"]);
    d.ok(&["boot", "--no-reboot"]);
    assert_eq!(d.status()["booted"], "A");
    d.ok(&["rollback"]);
    assert_eq!(d.status()["next_boot"], "B");
    assert!(d.ok(&["simulate-boot"]).contains("slot B"));
    d.ok(&["boot", "--no-reboot"]);
    let s = d.status();
    assert_eq!(s["booted"], "B");
    assert_eq!(slot_of(&s, "B")["record"]["version"], "2.0.0");
    if backend != Backend::File {
        let view = d.tool_view();
        assert!(view.contains("OTA_ORDER=B A"), "{view}");
        assert!(view.contains("OTA_B_GOOD=1"), "{view}");
    }
    if backend == Backend::Uboot {
        // Variables that were there before the updater are kept.
        assert!(d.tool_view().contains("bootcmd=run ota_boot"));
    }
}

#[test]
fn full_lifecycle_with_file_backend() {
    full_lifecycle(Backend::File);
}

#[test]
fn full_lifecycle_with_grub_backend() {
    full_lifecycle(Backend::Grub);
}

#[test]
fn full_lifecycle_with_uboot_backend() {
    full_lifecycle(Backend::Uboot);
}

/// Runs `args`, expecting `code`, and checks nothing the device boots from changed.
fn assert_refusal_changes_nothing(d: &Device, args: &[&str], code: i32) {
    let slot_a = d.slot("A");
    let slot_b = d.slot("B");
    let boot = d.bootloader_bytes();
    d.refused(args, code);
    assert!(d.slot("A") == slot_a, "active slot changed by {args:?}");
    assert!(d.slot("B") == slot_b, "inactive slot changed by {args:?}");
    assert!(
        d.bootloader_bytes() == boot,
        "bootloader environment changed by {args:?}"
    );
}

fn refusals_leave_everything_untouched(backend: Backend) {
    let d = Device::new(backend);
    let good = image_with_bytes("GOOD v2", 100_000, 7);
    let wrong_product = d.bundle("p.bundle", "other-router", "2.0.0", &good, None);
    assert_refusal_changes_nothing(
        &d,
        &["install", wrong_product.to_str().unwrap()],
        i32::from(exit::INCOMPATIBLE),
    );
    let downgrade = d.bundle("d.bundle", "acme-router", "1.0.0", &good, None);
    assert_refusal_changes_nothing(
        &d,
        &["install", downgrade.to_str().unwrap()],
        i32::from(exit::DOWNGRADE),
    );
    let too_big = d.bundle(
        "big.bundle",
        "acme-router",
        "2.0.0",
        &image_with_bytes("GOOD", SLOT_SIZE as usize + 1, 8),
        None,
    );
    assert_refusal_changes_nothing(
        &d,
        &["install", too_big.to_str().unwrap()],
        i32::from(exit::INCOMPATIBLE),
    );
    let stranger = SigningKey::generate();
    let unsigned = d.bundle("u.bundle", "acme-router", "2.0.0", &good, Some(&stranger));
    assert_refusal_changes_nothing(
        &d,
        &["install", unsigned.to_str().unwrap()],
        i32::from(exit::SIGNATURE),
    );
    let valid = d.bundle("v.bundle", "acme-router", "2.0.0", &good, None);
    let mut header_broken = fs::read(&valid).unwrap();
    header_broken[30] ^= 0x20; // inside the signed manifest
    fs::write(d.path("m.bundle"), header_broken).unwrap();
    assert_refusal_changes_nothing(
        &d,
        &["install", d.path("m.bundle").to_str().unwrap()],
        i32::from(exit::SIGNATURE),
    );
    // Another updater holds the lock.
    let lock = fs::File::create(d.path("state/lock")).unwrap();
    lock.try_lock().unwrap();
    assert_refusal_changes_nothing(
        &d,
        &["install", valid.to_str().unwrap()],
        i32::from(exit::BUSY),
    );
    drop(lock);
    // A trial boot in progress: installing would destroy the only fallback.
    d.ok(&["install", valid.to_str().unwrap()]);
    d.ok(&["simulate-boot"]);
    let v3 = d.bundle("v3.bundle", "acme-router", "3.0.0", &good, None);
    assert_refusal_changes_nothing(
        &d,
        &["install", v3.to_str().unwrap()],
        i32::from(exit::REFUSED),
    );
}

#[test]
fn refusals_leave_slots_and_file_bootloader_byte_identical() {
    refusals_leave_everything_untouched(Backend::File);
}

#[test]
fn refusals_leave_slots_and_grubenv_byte_identical() {
    refusals_leave_everything_untouched(Backend::Grub);
}

#[test]
fn refusals_leave_slots_and_uboot_env_byte_identical() {
    refusals_leave_everything_untouched(Backend::Uboot);
}

#[test]
fn corrupt_payload_never_reaches_the_boot_order() {
    let d = Device::new(Backend::Grub);
    let bundle = d.bundle(
        "v2.bundle",
        "acme-router",
        "2.0.0",
        &image_with_bytes("GOOD v2", 300_000, 9),
        None,
    );
    let mut bytes = fs::read(&bundle).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 1;
    fs::write(&bundle, bytes).unwrap();
    let slot_a = d.slot("A");
    d.refused(
        &["install", bundle.to_str().unwrap()],
        i32::from(exit::CORRUPT),
    );
    assert!(d.slot("A") == slot_a);
    let s = d.status();
    assert_eq!(s["next_boot"], "A");
    assert_eq!(
        slot_of(&s, "B")["boot"],
        serde_json::json!({"good": false, "tries": 0})
    );
    assert_eq!(slot_of(&s, "B")["record"]["content"], "writing");
    assert_eq!(s["last_result"]["kind"], "install_failed");
    assert!(s["last_result"]["reason"]
        .as_str()
        .unwrap()
        .contains("does not match its signed SHA-256"));
    // Slot B never boots: the bootloader keeps choosing A.
    assert!(d.ok(&["simulate-boot"]).contains("slot A"));
}

#[test]
fn install_from_standard_input_with_json_progress() {
    let d = Device::new(Backend::File);
    let v2 = image_with_bytes("GOOD v2", 200_000, 10);
    let bundle = d.bundle("v2.bundle", "acme-router", "2.0.0", &v2, None);
    let out = d
        .cmd(&["install", "-", "--json"])
        .stdin(fs::File::open(&bundle).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["event"], "accepted");
    assert_eq!(events.last().unwrap()["event"], "switched");
    let progressed: u64 = events
        .iter()
        .filter(|e| e["event"] == "progress")
        .map(|e| e["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(progressed, events[0]["payload_size"].as_u64().unwrap());
    assert_eq!(&d.slot("B")[..v2.len()], &v2[..]);
}

#[test]
fn rollback_refuses_a_slot_whose_bytes_changed() {
    let d = Device::new(Backend::File);
    let bundle = d.bundle(
        "v2.bundle",
        "acme-router",
        "2.0.0",
        &image_with_bytes("GOOD v2", 200_000, 11),
        None,
    );
    d.ok(&["install", bundle.to_str().unwrap()]);
    d.ok(&["simulate-boot"]);
    d.ok(&["boot", "--no-reboot"]);
    // Someone scribbles on slot A (the factory image) behind the updater's back.
    let mut a = d.slot("A");
    a[1000] ^= 0xff;
    fs::write(d.path("slot-a.rootfs"), a).unwrap();
    let stderr = d.refused(&["rollback"], i32::from(exit::REFUSED));
    assert!(
        stderr.contains("no longer matches its recorded hash"),
        "{stderr}"
    );
    assert_eq!(d.status()["next_boot"], "B");
}

#[test]
fn commit_by_hand_marks_the_trial_slot_good() {
    let d = Device::new(Backend::Uboot);
    let bundle = d.bundle(
        "v2.bundle",
        "acme-router",
        "2.0.0",
        &image_with_bytes("GOOD v2", 200_000, 12),
        None,
    );
    d.ok(&["install", bundle.to_str().unwrap()]);
    d.ok(&["simulate-boot"]);
    d.ok(&["commit"]);
    let s = d.status();
    assert_eq!(
        slot_of(&s, "B")["boot"],
        serde_json::json!({"good": true, "tries": 0})
    );
    assert_eq!(s["pending"], serde_json::Value::Null);
    // The next boot is steady on B.
    assert!(d.ok(&["simulate-boot"]).contains("slot B"));
    assert!(d.ok(&["boot", "--no-reboot"]).contains("nothing to do"));
}

#[test]
fn invalid_configuration_is_refused_with_line_and_usage_code() {
    let d = Device::new(Backend::File);
    let text = fs::read_to_string(d.path("updater.toml")).unwrap();
    fs::write(
        d.path("updater.toml"),
        text.replace("timeout_secs = 10", "timeout_secs = 10\ntimout = 3"),
    )
    .unwrap();
    let stderr = d.refused(&["status"], 2);
    assert!(
        stderr.contains("line ") && stderr.contains("timout"),
        "{stderr}"
    );
}

#[test]
fn status_explains_a_fresh_device() {
    let d = Device::new(Backend::Grub);
    let text = d.ok(&["status"]);
    assert!(text.contains("booted slot:  A"), "{text}");
    assert!(
        text.contains("slot A (booted): version 1.0.0, good"),
        "{text}"
    );
    assert!(text.contains("next boot:    A"), "{text}");
}

#[test]
fn fresh_grubenv_without_ota_variables_boots_slot_a() {
    let d = Device::new(Backend::Grub);
    // Device::new ran simulate-boot on a fresh `grub-editenv create` file.
    assert!(fs::read_to_string(d.path("cmdline"))
        .unwrap()
        .contains("ota.slot=A"));
}

/// Options of the delta bundles these tests build (version 2.0.0, temporary files in `dir`).
fn delta_options(dir: &std::path::Path, xz_content: bool) -> BuildOptions {
    BuildOptions {
        product: "acme-router".into(),
        version: semver::Version::new(2, 0, 0),
        created: 0,
        chunk_size: 64 * 1024,
        zstd_level: 3,
        temp_dir: dir.to_owned(),
        provenance: None,
        delta_format: ota_core::delta::DELTA_FORMAT_LATEST,
        xz_content,
    }
}

#[test]
fn delta_install_uses_the_delta_matching_the_active_slot() {
    let d = Device::new(Backend::File);
    // The factory image in slot A is the first 300_000 bytes of the slot.
    let factory = d.slot("A")[..300_000].to_vec();
    let mut v2 = factory.clone();
    v2[150_000..160_000].copy_from_slice(&image_with_bytes("GOOD", 10_000, 30));
    let dir = d.dir.path();
    fs::write(dir.join("factory.img"), &factory).unwrap();
    fs::write(dir.join("v2.img"), &v2).unwrap();
    // A base close to the factory image (so the delta stays a delta) but not it.
    let mut other_base = factory.clone();
    other_base[299_000] ^= 0xff;
    fs::write(dir.join("unrelated.img"), &other_base).unwrap();
    let build = |name: &str, bases: &[&str], with_full: bool| {
        let mut images = Vec::new();
        for b in bases {
            images.push(ImageInput {
                name: "rootfs".into(),
                reader: Box::new(fs::File::open(dir.join("v2.img")).unwrap()),
                base: Some(fs::File::open(dir.join(b)).unwrap()),
            });
        }
        if with_full {
            images.push(ImageInput {
                name: "rootfs".into(),
                reader: Box::new(fs::File::open(dir.join("v2.img")).unwrap()),
                base: None,
            });
        }
        let options = delta_options(dir, false);
        let path = dir.join(name);
        let mut out = fs::File::create(&path).unwrap();
        build_bundle(
            &options,
            images,
            std::slice::from_ref(&d.key),
            &mut tempfile::tempfile().unwrap(),
            &mut out,
            &|_| {},
        )
        .unwrap();
        path
    };
    // Only a delta from another base: refused before anything is written.
    let unrelated = build("unrelated.bundle", &["unrelated.img"], false);
    let stderr = d.refused(
        &["install", unrelated.to_str().unwrap()],
        i32::from(exit::INCOMPATIBLE),
    );
    assert!(
        stderr.contains("none made from what slot A holds"),
        "{stderr}"
    );
    // Deltas from two bases: the one matching slot A is applied; small and exact.
    let both = build("both.bundle", &["unrelated.img", "factory.img"], true);
    let out = d.ok(&["install", "--json", both.to_str().unwrap()]);
    assert!(out.contains("\"switched\""), "{out}");
    assert_eq!(&d.slot("B")[..v2.len()], &v2[..]);
    d.ok(&["simulate-boot"]);
    d.ok(&["boot", "--no-reboot"]);
    let s = d.status();
    assert_eq!(slot_of(&s, "B")["record"]["content"], "good");
    assert_eq!(
        slot_of(&s, "B")["record"]["images"]["rootfs"]["size"],
        300_000
    );
}

/// A squashfs-style image (back-to-back xz streams, as squashfs-tools writes its blocks)
/// updated by a `--xz-content` delta through `ota-update install`: the device decodes the old
/// streams from slot A, re-compresses the new content bit for bit into slot B, and boots it.
#[test]
fn xz_content_delta_installs_exactly() {
    use ota_core::delta::xz::{encode_stream, XzSettings};
    let d = Device::new(Backend::File);
    let squashfs_xz = XzSettings {
        preset: 6,
        dict_size: 128 << 10,
        check: 1,
    };
    // A header (the health check looks for GOOD), then the streams.
    let streams = |text: &[u8]| {
        let mut out = b"GOOD squashfs-like image\n".to_vec();
        for block in text.chunks(128 << 10) {
            encode_stream(block, squashfs_xz, &mut out, 1 << 22).unwrap();
        }
        out
    };
    let old: Vec<u8> = (0..40_000u32)
        .flat_map(|i| format!("{i} manual line {}\n", i * 31 % 89).into_bytes())
        .collect();
    let mut new = old.clone();
    new.splice(200_000..200_000, b"a new paragraph\n".repeat(40));
    let (factory, v2) = (streams(&old), streams(&new));
    let mut slot_a = d.slot("A");
    slot_a[..factory.len()].copy_from_slice(&factory);
    fs::write(d.path("slot-a.rootfs"), slot_a).unwrap();
    let dir = d.dir.path();
    fs::write(dir.join("factory.img"), &factory).unwrap();
    fs::write(dir.join("v2.img"), &v2).unwrap();
    let options = delta_options(dir, true);
    let path = dir.join("xz.bundle");
    let images = vec![ImageInput {
        name: "rootfs".into(),
        reader: Box::new(fs::File::open(dir.join("v2.img")).unwrap()),
        base: Some(fs::File::open(dir.join("factory.img")).unwrap()),
    }];
    let mut out = fs::File::create(&path).unwrap();
    let key = std::slice::from_ref(&d.key);
    let tmp = &mut tempfile::tempfile().unwrap();
    build_bundle(&options, images, key, tmp, &mut out, &|_| {}).unwrap();
    let bundle_len = fs::metadata(&path).unwrap().len();
    assert!(bundle_len * 10 < v2.len() as u64, "{bundle_len} bytes");
    d.ok(&["install", path.to_str().unwrap()]);
    assert_eq!(&d.slot("B")[..v2.len()], &v2[..]);
    d.ok(&["simulate-boot"]);
    d.ok(&["boot", "--no-reboot"]);
    assert_eq!(slot_of(&d.status(), "B")["record"]["content"], "good");
}

#[test]
fn reboots_come_after_the_decision_is_recorded_and_said() {
    // The reboot command stands in for the reset: it snapshots what the next boot would see.
    let d = Device::new(Backend::Grub);
    let toml = fs::read_to_string(d.path("updater.toml")).unwrap();
    let toml = toml.replace(
        r#"reboot_command = ["true"]"#,
        &format!(
            r#"reboot_command = ["sh", "-c", "cd '{}' && cp grubenv grubenv.at-reboot-$(ls grubenv.at-reboot-* 2>/dev/null | wc -l)"]"#,
            d.path("").display()
        ),
    );
    fs::write(d.path("updater.toml"), toml).unwrap();
    let at_reboot = |n: usize| fs::read(d.path(&format!("grubenv.at-reboot-{n}"))).ok();

    // install --reboot: the switch is on disk when the reboot command runs.
    let v3 = image_with_bytes("BAD! v3", 200_000, 3);
    let bundle = d.bundle("v3.bundle", "acme-router", "3.0.0", &v3, None);
    d.ok(&["install", "--reboot", bundle.to_str().unwrap()]);
    let env = String::from_utf8(at_reboot(0).expect("install --reboot rebooted")).unwrap();
    assert!(
        env.contains("OTA_ORDER=B A") && env.contains("OTA_B_TRIES=1"),
        "{env}"
    );

    // boot on a failing trial: says why on stdout, records the fallback, then reboots, then
    // exits with the health-check code and one error line.
    d.ok(&["simulate-boot"]);
    let out = d.run(&["boot", "--json"]);
    assert_eq!(out.status.code(), Some(i32::from(exit::HEALTH_CHECK)));
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["result"], "fell_back");
    assert!(said["reason"]
        .as_str()
        .unwrap()
        .contains("slot A boots next"));
    let env = String::from_utf8(at_reboot(1).expect("boot rebooted")).unwrap();
    assert!(
        env.contains("OTA_ORDER=A B") && env.contains("OTA_B_TRIES=0"),
        "{env}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);

    // rollback --reboot is refused here (B holds the failed v3): no reboot either.
    d.ok(&["simulate-boot"]);
    d.ok(&["boot", "--no-reboot"]);
    d.refused(&["rollback", "--reboot"], 10);
    assert!(at_reboot(2).is_none(), "a refused rollback rebooted");
}

/// `ota-server` serving `dir` on a free loopback port, over TLS with `(cert, key)`.
fn repo_server(dir: &std::path::Path, tls: Option<(&std::path::Path, &std::path::Path)>) -> Server {
    let mut args = vec!["--access-log", "off"];
    if let Some((cert, key)) = tls {
        args.extend([
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ]);
    }
    Server::start(dir, &args)
}

#[test]
fn install_from_a_url_served_by_ota_server() {
    let d = Device::new(Backend::Grub);
    let v2 = image_with_bytes("GOOD v2", 300_000, 2);
    d.bundle("v2.bundle", "acme-router", "2.0.0", &v2, None);
    let server = repo_server(d.dir.path(), None);

    // A missing file: a network error (exit 12), nothing touched.
    let before = (d.slot("A"), d.slot("B"), d.bootloader_bytes());
    d.refused(&["install", &format!("{}/missing.bundle", server.base)], 12);
    assert!(before == (d.slot("A"), d.slot("B"), d.bootloader_bytes()));

    d.ok(&["install", &format!("{}/v2.bundle", server.base)]);
    assert_eq!(&d.slot("B")[..v2.len()], &v2[..]);
    assert_eq!(d.status()["pending"]["slot"], "B");
}

#[test]
fn install_over_https_trusts_only_the_configured_ca() {
    let d = Device::new(Backend::File);
    let v2 = image_with_bytes("GOOD v2", 300_000, 2);
    d.bundle("v2.bundle", "acme-router", "2.0.0", &v2, None);
    // A private PKI: a CA, and a server certificate for 127.0.0.1 signed by it.
    let (ca, cert, key) = (d.path("ca.pem"), d.path("cert.pem"), d.path("key.pem"));
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .current_dir(d.path(""))
            .args(args)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Acme Device CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=updates.acme.test",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    fs::write(
        d.path("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    assert!(ca.exists());
    let server = repo_server(d.dir.path(), Some((&cert, &key)));
    let url = format!("{}/v2.bundle", server.base);
    assert!(url.starts_with("https://"));

    // Without the CA: the certificate is not trusted, nothing installed.
    let err = d.refused(&["install", &url], 12);
    assert!(err.contains("certificate"), "{err}");

    let toml = fs::read_to_string(d.path("updater.toml")).unwrap();
    fs::write(
        d.path("updater.toml"),
        format!(
            "{toml}\n[repository]\nurl = \"{}\"\nroot = \"root.json\"\nca_file = \"ca.pem\"\n",
            server.base
        ),
    )
    .unwrap();
    d.ok(&["install", &url]);
    assert_eq!(&d.slot("B")[..v2.len()], &v2[..]);
}
