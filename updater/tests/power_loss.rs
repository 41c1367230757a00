//! Power loss at every durable step, through the real `ota-update` CLI and the `file` backend.
//!
//! `OTA_FAULT_AT=N` (see `src/fault.rs`) aborts the updater at its N-th durable step, as
//! abruptly as a power cut: no destructor, no cleanup. Each scenario first counts the steps of a
//! clean run (`OTA_FAULT_LOG`), then, for every step N on a fresh copy of the device, kills the
//! run at N, "powers the device on again" (`simulate-boot`, then `boot --no-reboot`) and checks
//! the crash-ordering rules of docs/architecture.md: the device boots a slot holding a good image, the running slot was never
//! touched, `status` still answers, and the interrupted action can be completed afterwards.
//!
//! What a kill cannot lose here is unsynced data (the page cache survives the process): these
//! tests prove the order of the steps, not the fsyncs.
//!
//! Needs the `fault-injection` feature (Cargo.toml: `required-features`):
//! `cargo test -p ota-updater --test power_loss --features fault-injection`.

// `allow-unwrap-in-tests` covers `#[test]` functions only, not this file's helpers.
#![allow(clippy::unwrap_used)]

use ota_core::exit;
use ota_core::keys::SigningKey;
use ota_core::Sha256Digest;
use ota_test_support::{
    image_with_bytes, sign_rootfs_bundle, sign_rootfs_bundle_from, slot_of, updater_toml,
    FILE_BOOTLOADER, HEALTH_GOOD_MARKER,
};
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "power_loss/crash_states.rs"]
mod crash_states;

/// Size of each slot's device file.
const SLOT_SIZE: u64 = 512 * 1024;
/// The factory image in slot A (the rest of the device file stays zero).
const V1_LEN: usize = 300_000;
/// The update: 97 chunks of at most 4 KiB, the last one partial, so an install has ~110
/// durable steps.
const V2_LEN: usize = 384 * 1024 + 1234;
/// The smallest chunk size the format allows: one slot write per 4 KiB.
const CHUNK_SIZE: u32 = 4 << 10;
/// A later release, written over slot A.
const V3_LEN: usize = 350_000;
const PRODUCT: &str = "acme-router";

/// `std::process::abort` raises SIGABRT.
const SIGABRT: i32 = 6;

/// Signs `rootfs` as release `version` into `path`.
fn sign_bundle(key: &SigningKey, version: &str, rootfs: &[u8], path: &Path) {
    sign_rootfs_bundle(key, PRODUCT, version, rootfs, CHUNK_SIZE, path);
}

/// The releases of a scenario: the factory image, the update v2 and its signed bundle, and
/// any further release signed with [`Releases::sign`].
struct Releases {
    /// Holds the key and the bundles, outside every device directory.
    dir: tempfile::TempDir,
    key: SigningKey,
    /// Slot A's whole device file as the factory left it (v1 then zeros).
    factory_slot: Vec<u8>,
    v2: Vec<u8>,
    /// Every complete image that passes the health check: (name, bytes).
    good: Vec<(String, Vec<u8>)>,
    /// A delta bundle of release 2.0.0, when the scenario installs that instead.
    delta: Option<PathBuf>,
}

impl Releases {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        let mut factory_slot = image_with_bytes("GOOD v1", V1_LEN, 1);
        factory_slot.resize(SLOT_SIZE as usize, 0);
        let v2 = image_with_bytes("GOOD v2", V2_LEN, 2);
        let good = vec![
            ("factory v1".to_owned(), factory_slot.clone()),
            ("v2".to_owned(), v2.clone()),
        ];
        let mut r = Releases {
            dir,
            key,
            factory_slot,
            v2: Vec::new(),
            good,
            delta: None,
        };
        r.sign("2.0.0", &v2);
        r.v2 = v2;
        r
    }

    /// Signs `rootfs` as release `version`; an image whose marker starts with GOOD counts as
    /// good. Returns the `install` command line for it.
    fn sign(&mut self, version: &str, rootfs: &[u8]) -> Vec<String> {
        let path = self.dir.path().join(format!("{version}.bundle"));
        sign_bundle(&self.key, version, rootfs, &path);
        if rootfs.starts_with(b"GOOD") {
            self.good.push((version.to_owned(), rootfs.to_vec()));
        }
        vec!["install".into(), path.to_str().unwrap().to_owned()]
    }

    fn install_v2(&self) -> Vec<String> {
        let path = self.dir.path().join("2.0.0.bundle");
        vec!["install".into(), path.to_str().unwrap().to_owned()]
    }

    /// Release 2.0.0 as a delta from the factory image instead (`v2-delta` among the good
    /// images): the factory image with a few regions rewritten and a tail appended.
    fn with_delta_update(mut self) -> Self {
        let mut v2 = self.factory_slot[..V1_LEN].to_vec();
        let fresh = image_with_bytes("GOOD v2d", 60_000, 5);
        v2[..4096].copy_from_slice(&fresh[..4096]);
        v2[100_000..120_000].copy_from_slice(&fresh[10_000..30_000]);
        v2.extend_from_slice(&fresh[30_000..]);
        let path = self.dir.path().join("2.0.0-delta.bundle");
        let base = self.dir.path().join("v1.img");
        fs::write(&base, &self.factory_slot[..V1_LEN]).unwrap();
        sign_delta_bundle(&self.key, "2.0.0", &v2, &base, &path);
        self.good.push(("v2-delta".to_owned(), v2));
        self.delta = Some(path);
        self
    }

    /// The good image name of release 2.0.0 as the scenario installs it.
    fn update_name(&self) -> &'static str {
        if self.delta.is_some() {
            "v2-delta"
        } else {
            "v2"
        }
    }

    /// The `install` command of release 2.0.0 as the scenario installs it.
    fn install_update(&self) -> Vec<String> {
        match &self.delta {
            Some(path) => vec!["install".into(), path.to_str().unwrap().to_owned()],
            None => self.install_v2(),
        }
    }
}

/// Signs `rootfs` as release `version`, a delta from `base`, into `path`.
fn sign_delta_bundle(key: &SigningKey, version: &str, rootfs: &[u8], base: &Path, path: &Path) {
    sign_rootfs_bundle_from(key, PRODUCT, version, rootfs, Some(base), CHUNK_SIZE, path);
}

/// A simulated A/B device in its own temporary directory: slots are files, the bootloader is
/// the `file` backend, paths in the configuration are relative so a copy is a whole device.
struct Device {
    dir: tempfile::TempDir,
}

/// How a run of `ota-update` is instrumented.
enum Fault<'a> {
    None,
    /// Count the durable steps into this log.
    Log(&'a Path),
    /// Die at step N, logging steps into the file.
    At(u64, &'a Path),
    /// Record every file-system operation into this log (`OTA_IO_LOG`).
    IoLog(&'a Path),
}

impl Device {
    /// A factory-fresh device: slot A holds v1 (release 1.0.0), has been booted and recorded by
    /// `ota-update boot`; slot B is an empty device file.
    fn factory(releases: &Releases) -> Self {
        let d = Device {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::write(d.path("vendor.pub"), releases.key.verifying_key().to_pem()).unwrap();
        fs::write(d.path("slot-a.rootfs"), &releases.factory_slot).unwrap();
        fs::File::create(d.path("slot-b.rootfs"))
            .unwrap()
            .set_len(SLOT_SIZE)
            .unwrap();
        // Product acme-router (PRODUCT), trust threshold 1 (the default).
        fs::write(
            d.path("updater.toml"),
            updater_toml(
                FILE_BOOTLOADER,
                &format!("{HEALTH_GOOD_MARKER}\ntimeout_secs = 30"),
            ),
        )
        .unwrap();
        assert_eq!(d.power_on(), "A");
        d
    }

    /// A byte-for-byte copy of this device in a new temporary directory.
    fn copy(&self) -> Device {
        let copy = Device {
            dir: tempfile::tempdir().unwrap(),
        };
        copy_tree(self.dir.path(), copy.dir.path());
        copy
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S], fault: Fault) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ota-update"));
        cmd.arg("--config")
            .arg(self.path("updater.toml"))
            .args(args)
            // Any core file of an aborted run lands in the device's directory.
            .current_dir(self.dir.path())
            .env_remove("CI")
            .stdin(Stdio::null())
            .env_remove("OTA_FAULT_AT")
            .env_remove("OTA_FAULT_LOG")
            .env_remove("OTA_IO_LOG");
        match fault {
            Fault::None => {}
            Fault::Log(log) => {
                cmd.env("OTA_FAULT_LOG", log);
            }
            Fault::At(n, log) => {
                cmd.env("OTA_FAULT_AT", n.to_string())
                    .env("OTA_FAULT_LOG", log);
            }
            Fault::IoLog(log) => {
                cmd.env("OTA_IO_LOG", log);
            }
        }
        cmd.output().unwrap()
    }

    /// Runs and expects success; returns standard output.
    fn ok<S: AsRef<OsStr> + std::fmt::Debug>(&self, args: &[S]) -> String {
        let out = self.run(args, Fault::None);
        assert!(
            out.status.success(),
            "ota-update {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects exit code `code`.
    fn fails_with<S: AsRef<OsStr> + std::fmt::Debug>(&self, args: &[S], code: i32) {
        let out = self.run(args, Fault::None);
        assert_eq!(
            out.status.code(),
            Some(code),
            "ota-update {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The labels of the durable steps of a clean run of `args`, which must exit with `code`.
    fn durable_steps<S: AsRef<OsStr> + std::fmt::Debug>(
        &self,
        args: &[S],
        code: i32,
    ) -> Vec<String> {
        let log = self.path("fault.log");
        let out = self.run(args, Fault::Log(&log));
        assert_eq!(
            out.status.code(),
            Some(code),
            "clean run of {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let steps = read_fault_log(&log);
        fs::remove_file(&log).unwrap();
        steps
    }

    /// Runs `args` with the power cut at durable step `n`: asserts the process died there
    /// (killed by SIGABRT, not an exit) and returns the step's label.
    fn cut_power_at<S: AsRef<OsStr> + std::fmt::Debug>(&self, args: &[S], n: u64) -> String {
        let log = self.path("fault.log");
        let out = self.run(args, Fault::At(n, &log));
        assert_eq!(
            (out.status.code(), out.status.signal()),
            (None, Some(SIGABRT)),
            "ota-update {args:?} with the power cut at step {n} did not die there ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let steps = read_fault_log(&log);
        fs::remove_file(&log).unwrap();
        assert_eq!(
            steps.len() as u64,
            n,
            "steps logged before the cut: {steps:?}"
        );
        steps.last().unwrap().clone()
    }

    /// What the bootloader does at power-on, then `ota-update boot` as the init system runs
    /// it. Returns the slot booted.
    fn power_on(&self) -> String {
        let out = self.ok(&["simulate-boot"]);
        let slot = out
            .trim()
            .strip_prefix("simulated bootloader booted slot ")
            .unwrap_or_else(|| panic!("unexpected simulate-boot output {out:?}"))
            .to_owned();
        let outcome: Value = serde_json::from_str(&self.ok(&["boot", "--no-reboot", "--json"]))
            .expect("boot --json prints JSON");
        assert!(
            ["steady", "committed", "rollback_detected"]
                .contains(&outcome["result"].as_str().unwrap_or_default()),
            "boot outcome {outcome}"
        );
        slot
    }

    /// Status answers in whatever state a cut left and predicts the next boot; the records
    /// match the slots; power-on boots that slot, holding a good image. Returns the slot and
    /// which image it holds.
    fn power_on_as_predicted(&self, releases: &Releases, context: &str) -> (String, String) {
        let status = self.status();
        let next = status["next_boot"].as_str().unwrap().to_owned();
        self.assert_records_match_slots(context);
        let booted = self.power_on();
        assert_eq!(booted, next, "{context}: status predicted {next}");
        let holds = self.assert_holds_good_image(&booted, releases, context);
        (booted, holds)
    }

    /// Status answers and the records match the slots; power-on boots a good image that runs
    /// committed (1.0.0 in A, 2.0.0 in B). Returns the slot and its version.
    fn power_on_committed(&self, releases: &Releases, context: &str) -> (String, &'static str) {
        self.status();
        self.assert_records_match_slots(context);
        let booted = self.power_on();
        self.assert_holds_good_image(&booted, releases, context);
        self.assert_records_match_slots(context);
        let version = if booted == "A" { "1.0.0" } else { "2.0.0" };
        self.assert_committed_on(&booted, version, context);
        (booted, version)
    }

    /// `status --json`, which must answer and parse whatever state the device is in.
    fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status --json prints JSON")
    }

    fn slot_bytes(&self, slot: &str) -> Vec<u8> {
        fs::read(self.path(&format!("slot-{}.rootfs", slot.to_lowercase()))).unwrap()
    }

    /// Asserts that `slot` holds a complete, good image (the untouched factory device, or
    /// exactly one of the good releases), not a torn or failed one. Returns which.
    fn assert_holds_good_image(&self, slot: &str, releases: &Releases, context: &str) -> String {
        let bytes = self.slot_bytes(slot);
        match releases.good.iter().find(|(_, image)| bytes.starts_with(image)) {
            Some((name, _)) => name.clone(),
            None => panic!(
                "{context}: slot {slot} holds no complete good image (torn, stale or failed write); it starts with {:?}",
                String::from_utf8_lossy(&bytes[..16])
            ),
        }
    }

    /// Asserts that every slot the updater records as good or installed still hashes to the
    /// image recorded for it.
    fn assert_records_match_slots(&self, context: &str) {
        let status = self.status();
        for slot in status["slots"].as_array().unwrap() {
            let record = &slot["record"];
            let content = record["content"].as_str().unwrap_or("none");
            if content != "good" && content != "installed" {
                continue;
            }
            let name = slot["name"].as_str().unwrap();
            let bytes = self.slot_bytes(name);
            let images = record["images"].as_object().unwrap();
            assert!(
                !images.is_empty(),
                "{context}: slot {name} is {content} without a recorded image"
            );
            let rootfs = &images["rootfs"];
            let size = rootfs["size"].as_u64().unwrap() as usize;
            assert_eq!(
                rootfs["sha256"].as_str().unwrap(),
                Sha256Digest::of(&bytes[..size]).to_hex(),
                "{context}: slot {name} ({content}) does not hash to its record"
            );
        }
    }

    /// Asserts the device runs `slot` at `version`, committed, with nothing pending.
    fn assert_committed_on(&self, slot: &str, version: &str, context: &str) {
        let status = self.status();
        assert_eq!(status["booted"], slot, "{context}: {status:#}");
        assert_eq!(status["next_boot"], slot, "{context}: {status:#}");
        assert_eq!(status["pending"], Value::Null, "{context}: {status:#}");
        let s = slot_of(&status, slot);
        assert_eq!(s["boot"]["good"], true, "{context}: {status:#}");
        assert_eq!(s["record"]["content"], "good", "{context}: {status:#}");
        assert_eq!(s["record"]["version"], version, "{context}: {status:#}");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Labels of a fault log (`N label` per line, N counting from 1).
fn read_fault_log(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let (n, label) = line.split_once(' ').unwrap();
            assert_eq!(n, (i + 1).to_string(), "fault log out of order: {text}");
            label.to_owned()
        })
        .collect()
}

/// One power-loss scenario: a device prepared up to the action, and the action.
struct Scenario {
    releases: Releases,
    template: Device,
    action: Vec<String>,
    /// Exit code of a clean run of the action.
    code: i32,
}

impl Scenario {
    /// Factory device on A (v1); the action installs v2 into B.
    fn install() -> Self {
        Self::install_of(Releases::new())
    }

    /// Factory device on A (v1); the action installs v2 into B as a delta from v1.
    fn install_delta() -> Self {
        Self::install_of(Releases::new().with_delta_update())
    }

    fn install_of(releases: Releases) -> Self {
        let template = Device::factory(&releases);
        let action = releases.install_update();
        Scenario {
            releases,
            template,
            action,
            code: 0,
        }
    }

    /// v2 installed into B and booted on trial; the action is the boot-time commit.
    fn boot_commit() -> Self {
        let releases = Releases::new();
        let template = Device::factory(&releases);
        template.ok(&releases.install_v2());
        assert!(template.ok(&["simulate-boot"]).contains("slot B"));
        Scenario {
            releases,
            template,
            action: vec!["boot".into(), "--no-reboot".into()],
            code: 0,
        }
    }

    /// A device running v2 committed in B, with v1 still good in A.
    fn running_v2() -> (Releases, Device) {
        let releases = Releases::new();
        let template = Device::factory(&releases);
        template.ok(&releases.install_v2());
        assert_eq!(template.power_on(), "B");
        template.assert_committed_on("B", "2.0.0", "set-up");
        (releases, template)
    }

    /// Running v2 in B; the action is the admin rollback to A.
    fn rollback() -> Self {
        let (releases, template) = Self::running_v2();
        Scenario {
            releases,
            template,
            action: vec!["rollback".into()],
            code: 0,
        }
    }

    /// Running v2 in B; the action installs v3 over the previous release in A, the slot an
    /// admin rollback would go back to.
    fn install_over_previous_release() -> Self {
        let (mut releases, template) = Self::running_v2();
        let action = releases.sign("3.0.0", &image_with_bytes("GOOD v3", V3_LEN, 3));
        Scenario {
            releases,
            template,
            action,
            code: 0,
        }
    }

    /// Running v2 in B, v3 installed into A fails its health check on its trial boot; the
    /// action is that boot, which falls back (exit 11).
    fn failed_trial() -> Self {
        let (mut releases, template) = Self::running_v2();
        let install = releases.sign("3.0.0", &image_with_bytes("BAD! v3", V3_LEN, 3));
        template.ok(&install);
        assert!(template.ok(&["simulate-boot"]).contains("slot A"));
        Scenario {
            releases,
            template,
            action: vec!["boot".into(), "--no-reboot".into()],
            code: i32::from(exit::HEALTH_CHECK),
        }
    }

    /// The durable steps of a clean run of the action (on a copy of the template).
    fn steps(&self) -> Vec<String> {
        self.template.copy().durable_steps(&self.action, self.code)
    }

    /// Cuts the power at every durable step in turn, each on a fresh copy of the device,
    /// then calls `after(device, context)`. Returns the number of steps cut at.
    fn cut_power_at_every_step(&self, mut after: impl FnMut(&Device, &str)) -> u64 {
        let steps = self.steps();
        let count = steps.len() as u64;
        assert!(count > 0, "{:?} has no durable step", self.action);
        for n in 1..=count {
            let device = self.template.copy();
            let label = device.cut_power_at(&self.action, n);
            assert_eq!(
                label,
                steps[n as usize - 1],
                "step {n} differs from the clean run"
            );
            after(
                &device,
                &format!(
                    "{:?}: power cut at step {n}/{count} ({label})",
                    self.action[0]
                ),
            );
        }
        // One past the last step: the run completes, so every step was exercised.
        let device = self.template.copy();
        let out = device.run(
            &self.action,
            Fault::At(count + 1, &device.path("fault.log")),
        );
        assert_eq!(
            out.status.code(),
            Some(self.code),
            "{:?} with OTA_FAULT_AT past its {count} steps: {}",
            self.action,
            String::from_utf8_lossy(&out.stderr)
        );
        count
    }
}

/// After a power cut during the install of v2: A untouched, status answers and predicts the
/// next boot, a good image boots, the update can be completed. Returns the slot booted.
fn check_install_cut(device: &Device, releases: &Releases, context: &str) -> String {
    // The running slot is never written.
    assert!(
        device.slot_bytes("A") == releases.factory_slot,
        "{context}: slot A changed"
    );
    // Power on again: a good image boots (A untouched, or B holding exactly v2).
    let (booted, holds) = device.power_on_as_predicted(releases, context);
    let update = releases.update_name();
    assert_eq!(
        holds,
        if booted == "A" { "factory v1" } else { update },
        "{context}"
    );
    device.assert_records_match_slots(context);

    // The update can be completed (resumed or started over).
    if booted == "A" {
        device.assert_committed_on("A", "1.0.0", context);
        device.ok(&releases.install_update());
        assert_eq!(device.power_on(), "B", "{context}: re-install");
    } else {
        device.fails_with(&releases.install_update(), i32::from(exit::DOWNGRADE));
    }
    assert_eq!(
        device.assert_holds_good_image("B", releases, context),
        update,
        "{context}"
    );
    device.assert_records_match_slots(context);
    device.assert_committed_on("B", "2.0.0", context);
    assert!(device.slot_bytes("A") == releases.factory_slot, "{context}");
    booted
}

#[test]
fn install_survives_power_loss_at_every_durable_step() {
    let scenario = Scenario::install();
    let releases = &scenario.releases;
    let mut booted_new_slot = 0;
    let count = scenario.cut_power_at_every_step(|device, context| {
        if check_install_cut(device, releases, context) == "B" {
            booted_new_slot += 1;
        }
    });
    // Only a cut after the switch's atomic rename boots the new slot directly: at the rename,
    // at the directory fsync, or at the removal of the finished install journal.
    assert!(
        (1..=3).contains(&booted_new_slot),
        "{booted_new_slot} cuts booted B directly"
    );
    println!("install: {count} power cuts");
    assert!(count >= 100, "an install has only {count} durable steps");
}

/// After a power cut during the boot-time commit of v2 in B: committed on whichever slot came
/// up, staying there; from A, the update can be installed again.
fn check_commit_cut(device: &Device, releases: &Releases, context: &str) {
    // Committed on whichever slot came up, and it stays there.
    let (booted, version) = device.power_on_committed(releases, context);
    assert_eq!(device.power_on(), booted, "{context}: second boot");
    device.assert_committed_on(&booted, version, context);

    // Fallen back to A: the update can be installed again and committed.
    if booted == "A" {
        device.ok(&releases.install_v2());
        assert_eq!(device.power_on(), "B", "{context}: re-install");
        device.assert_holds_good_image("B", releases, context);
        device.assert_committed_on("B", "2.0.0", context);
    }
}

#[test]
fn boot_commit_survives_power_loss() {
    let scenario = Scenario::boot_commit();
    let releases = &scenario.releases;
    let count = scenario
        .cut_power_at_every_step(|device, context| check_commit_cut(device, releases, context));
    println!("boot commit: {count} power cuts");
}

/// After a power cut during the admin rollback from B to A: a good, committed slot runs, and
/// the rollback can be done again.
fn check_rollback_cut(device: &Device, releases: &Releases, context: &str) {
    let (booted, _) = device.power_on_committed(releases, context);

    // The rollback (to whichever slot is not running) can be done again.
    device.ok(&["rollback"]);
    let other = if booted == "A" { "B" } else { "A" };
    assert_eq!(device.power_on(), other, "{context}: rollback again");
    device.assert_holds_good_image(other, releases, context);
    device.assert_records_match_slots(context);
    let version = if other == "A" { "1.0.0" } else { "2.0.0" };
    device.assert_committed_on(other, version, context);
}

#[test]
fn rollback_survives_power_loss() {
    let scenario = Scenario::rollback();
    let releases = &scenario.releases;
    let count = scenario
        .cut_power_at_every_step(|device, context| check_rollback_cut(device, releases, context));
    println!("rollback: {count} power cuts");
}

#[test]
fn install_over_the_previous_release_never_leaves_a_torn_slot_to_roll_back_to() {
    let scenario = Scenario::install_over_previous_release();
    let releases = &scenario.releases;
    let running_slot = scenario.template.slot_bytes("B");
    let (mut rolled_back, mut refused) = (0, 0);
    let count = scenario.cut_power_at_every_step(|device, context| {
        assert!(
            device.slot_bytes("B") == running_slot,
            "{context}: slot B changed"
        );
        let (booted, holds) = device.power_on_as_predicted(releases, context);
        device.assert_records_match_slots(context);
        if booted == "A" {
            // Switched: A holds exactly v3, which commits.
            assert_eq!(holds, "3.0.0", "{context}");
            device.assert_committed_on("A", "3.0.0", context);
            device.fails_with(&scenario.action, i32::from(exit::DOWNGRADE));
            return;
        }
        assert_eq!(holds, "v2", "{context}");
        device.assert_committed_on("B", "2.0.0", context);
        // An admin rollback to A is allowed only while A still holds its good image.
        let out = device.run(&["rollback"], Fault::None);
        match out.status.code() {
            Some(0) => {
                rolled_back += 1;
                assert_eq!(device.power_on(), "A", "{context}: rollback");
                let holds = device.assert_holds_good_image("A", releases, context);
                assert_eq!(
                    holds, "factory v1",
                    "{context}: rolled back to a changed slot"
                );
                device.assert_committed_on("A", "1.0.0", context);
            }
            Some(code) if code == i32::from(exit::REFUSED) => {
                refused += 1;
                assert!(
                    device.slot_bytes("B") == running_slot,
                    "{context}: refused rollback changed B"
                );
                // The update can be completed.
                device.ok(&scenario.action);
                assert_eq!(device.power_on(), "A", "{context}: re-install");
                let holds = device.assert_holds_good_image("A", releases, context);
                assert_eq!(holds, "3.0.0", "{context}");
                device.assert_committed_on("A", "3.0.0", context);
            }
            _ => panic!(
                "{context}: rollback failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
        device.assert_records_match_slots(context);
    });
    // Both answers were exercised: rollback before the first write to A, refusal after.
    assert!(
        rolled_back > 0 && refused > 0,
        "{rolled_back} rollbacks, {refused} refusals"
    );
    println!(
        "install over the previous release: {count} power cuts ({rolled_back} allowed a rollback)"
    );
}

#[test]
fn failed_trial_fallback_survives_power_loss() {
    let scenario = Scenario::failed_trial();
    let releases = &scenario.releases;
    let count = scenario.cut_power_at_every_step(|device, context| {
        device.status();
        // The failed slot never boots again: the device comes back on v2 and records why.
        let booted = device.power_on();
        assert_eq!(booted, "B", "{context}");
        assert_eq!(device.assert_holds_good_image("B", releases, context), "v2");
        device.assert_committed_on("B", "2.0.0", context);
        let status = device.status();
        let a = slot_of(&status, "A");
        assert_eq!(a["record"]["content"], "bad", "{context}: {status:#}");
        assert_eq!(a["boot"]["good"], false, "{context}: {status:#}");
        assert_eq!(
            status["last_result"]["kind"], "rolled_back",
            "{context}: {status:#}"
        );
        assert_eq!(device.power_on(), "B", "{context}: second boot");
        // Nothing to roll back to.
        device.fails_with(&["rollback"], i32::from(exit::REFUSED));
        device.assert_records_match_slots(context);
    });
    println!("failed trial fallback: {count} power cuts");
}

#[test]
fn power_loss_tests_cut_at_least_100_points_in_total() {
    let counts = [
        Scenario::install().steps().len(),
        Scenario::boot_commit().steps().len(),
        Scenario::rollback().steps().len(),
        Scenario::install_over_previous_release().steps().len(),
        Scenario::failed_trial().steps().len(),
    ];
    let total: usize = counts.iter().sum();
    println!("durable steps per scenario: {counts:?}, total {total}");
    assert!(total >= 100, "only {total} power-cut points: {counts:?}");
}

/// An install cut after it recorded the new slot as installed and pending, but before the
/// switch gave that slot its try: the slot never booted, so the next boot must not report it
/// as a failed trial boot (nor mark a verified image bad).
#[test]
fn install_cut_just_before_the_switch_is_not_reported_as_a_failed_trial() {
    let scenario = Scenario::install();
    let steps = scenario.steps();
    // The switch is the last bootloader write; the pending record is saved just before it,
    // its rename two steps before the switch starts, and the switch takes effect at its rename.
    let switch = steps
        .iter()
        .rposition(|label| label == "file-bootloader: before write")
        .unwrap() as u64
        + 1;
    for n in switch - 2..switch + 3 {
        let device = scenario.template.copy();
        let label = device.cut_power_at(&scenario.action, n);
        let context = format!("power cut at install step {n} ({label})");
        assert_eq!(device.power_on(), "A", "{context}");
        let status = device.status();
        assert_ne!(
            status["last_result"]["kind"], "rolled_back",
            "{context}: slot B never booted: {status:#}"
        );
        assert_ne!(
            slot_of(&status, "B")["record"]["content"],
            "bad",
            "{context}: slot B never booted: {status:#}"
        );
    }
}
