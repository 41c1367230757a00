//! Fleet-safe device behaviour through the real CLIs (ota-sign, ota-server, ota-update with the
//! `file` bootloader): a failed release is installed once and never again (no reboot loop), an
//! installed release waiting for its reboot is never written again, holds and admin rollbacks
//! keep releases off, unreadable records are rebuilt from the bootloader at every lifecycle
//! step, aliased slots and links planted in the state directory change nothing, and parallel
//! checks all succeed.
#![allow(clippy::unwrap_used)]

use ota_core::exit;
use ota_test_support::{image, Repo, Server, SimDevice};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A repository served by ota-server and a device following it (booted once on slot A).
struct Fleet {
    _dir: tempfile::TempDir,
    repo: Repo,
    server: Server,
    device: SimDevice,
}

impl Fleet {
    fn new(daemon: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(&dir.path().join("vendor"));
        repo.publish();
        let server = Server::start(Path::new(&repo.root_dir()), &["--access-log", "off"]);
        let device = factory_device(dir.path(), &repo);
        let section = device.repository_section(&server.base, &repo.initial_root());
        let config = fs::read_to_string(device.config()).unwrap();
        fs::write(device.config(), format!("{config}\n{section}\n{daemon}\n")).unwrap();
        assert_eq!(device.power_on(), Some(0));
        Fleet {
            _dir: dir,
            repo,
            server,
            device,
        }
    }

    fn release(&self, version: &str, marker: &str, seed: u32) {
        self.repo.add_release(
            "acme-router",
            version,
            "stable",
            &image(marker, 200_000, seed),
        );
        self.repo.publish();
    }

    fn check(&self) -> Value {
        self.device.json(&["check", "--json"])
    }
}

/// A device in `dir/device` trusting `repo`'s bundle key, slot A holding 1.0.0; not booted.
fn factory_device(dir: &Path, repo: &Repo) -> SimDevice {
    SimDevice::new(
        &dir.join("device"),
        &repo.bundle_pub(),
        &image("GOOD 1.0.0", 200_000, 1),
        "",
    )
}

const DAEMON: &str = "[daemon]\ninterval_secs = 1\njitter_secs = 0\nreboot = true";
const DAEMON_NO_REBOOT: &str = "[daemon]\ninterval_secs = 1\njitter_secs = 0\nreboot = false";

/// What changes when a slot or the bootloader is written: the slot file's mtime (ns) and the
/// bootloader file's bytes.
fn writes_witness(device: &SimDevice) -> (i64, i64, Vec<u8>) {
    let meta = fs::metadata(device.path("slot-b.rootfs")).unwrap();
    (meta.mtime(), meta.mtime_nsec(), device.bootloader())
}

fn skipped_reasons(check: &Value) -> String {
    check["skipped"].to_string()
}

#[test]
fn a_failed_release_is_installed_once_and_never_again() {
    let fleet = Fleet::new(DAEMON);
    let dev = &fleet.device;
    // 2.0.0 is broken: its rootfs fails the health check.
    fleet.release("2.0.0", "BAD 2.0.0", 2);
    dev.ok(&["daemon", "--rounds", "1"]);
    assert_eq!(fleet.check()["reboot_pending"]["version"], "2.0.0");
    // Power cycle: the trial fails, the device falls back by itself.
    assert_eq!(dev.power_on(), Some(i32::from(exit::HEALTH_CHECK)));
    assert_eq!(dev.power_on(), Some(0));
    let status = dev.json(&["status", "--json"]);
    assert_eq!(status["booted"], "A");
    assert_eq!(
        status["failed_releases"][0]["version"], "2.0.0",
        "{status:#}"
    );
    assert!(status["failed_releases"][0]["target_sha256"].is_string());

    // Three more polls: nothing is downloaded or written again.
    let before = writes_witness(dev);
    dev.ok(&["daemon", "--rounds", "3"]);
    assert_eq!(
        writes_witness(dev),
        before,
        "a failed release was written again"
    );
    let check = fleet.check();
    assert!(check["update"].is_null(), "{check:#}");
    assert!(
        skipped_reasons(&check).contains("failed its trial on this device"),
        "{check:#}"
    );

    // A newer, good release is still offered and installed.
    fleet.release("2.1.0", "GOOD 2.1.0", 3);
    dev.ok(&["daemon", "--rounds", "1"]);
    assert_ne!(writes_witness(dev), before);
    assert_eq!(dev.power_on(), Some(0));
    let status = dev.json(&["status", "--json"]);
    assert_eq!(status["booted"], "B");
    assert_eq!(status["last_result"]["kind"], "committed");
    assert_eq!(slot_version(&status, "B"), "2.1.0");

    // An explicit install of the failed release's bundle is still possible (a retry by hand).
    let bundle = fleet
        .repo
        .bundle("acme-router", "2.0.0", &image("BAD 2.0.0", 200_000, 2));
    dev.ok(&["install", "--allow-downgrade", bundle.to_str().unwrap()]);
    drop(fleet.server);
}

fn slot_version(status: &Value, slot: &str) -> String {
    status["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == slot)
        .map(|s| s["record"]["version"].as_str().unwrap_or("").to_owned())
        .unwrap()
}

#[test]
fn a_release_waiting_for_its_reboot_is_written_exactly_once() {
    let fleet = Fleet::new(DAEMON_NO_REBOOT);
    let dev = &fleet.device;
    fleet.release("2.0.0", "GOOD 2.0.0", 2);
    let untouched = writes_witness(dev);
    dev.ok(&["daemon", "--rounds", "1"]);
    let written = writes_witness(dev);
    assert_ne!(written, untouched, "the first round installs");
    dev.ok(&["daemon", "--rounds", "4"]);
    assert_eq!(
        writes_witness(dev),
        written,
        "an installed release was written again"
    );
    let check = fleet.check();
    assert!(check["update"].is_null(), "{check:#}");
    assert_eq!(check["reboot_pending"]["version"], "2.0.0");
    assert!(dev.ok(&["check"]).contains("installed, reboot pending"));
    let status = dev.json(&["status", "--json"]);
    assert_eq!(status["reboot_pending"], true);
    assert!(dev.ok(&["status"]).contains("reboot pending"));
    // `install` without a source says so and writes nothing either.
    assert!(dev.ok(&["install"]).contains("reboot pending"));
    assert_eq!(writes_witness(dev), written);
    // A newer release replaces the one waiting (still only one write for it).
    fleet.release("2.1.0", "GOOD 2.1.0", 3);
    assert_eq!(fleet.check()["update"]["version"], "2.1.0");
    assert_eq!(dev.power_on(), Some(0));
    assert_eq!(dev.json(&["status", "--json"])["booted"], "B");
}

#[test]
fn holds_and_admin_rollbacks_keep_releases_off() {
    let fleet = Fleet::new(DAEMON);
    let dev = &fleet.device;
    fleet.release("2.0.0", "GOOD 2.0.0", 2);
    assert!(dev
        .ok(&["hold", "--reason", "change freeze"])
        .contains("held"));
    let before = writes_witness(dev);
    dev.ok(&["daemon", "--rounds", "2"]);
    assert_eq!(
        writes_witness(dev),
        before,
        "the daemon installed while held"
    );
    let check = fleet.check();
    assert!(check["update"].is_null());
    assert_eq!(check["held"]["reason"], "change freeze");
    let stderr = dev.fails(&["install"], exit::REFUSED);
    assert!(stderr.contains("held"), "{stderr}");
    assert!(dev.ok(&["status"]).contains("change freeze"));

    dev.ok(&["release-hold"]);
    dev.ok(&["daemon", "--rounds", "1"]);
    assert_eq!(dev.power_on(), Some(0));
    assert_eq!(slot_version(&dev.json(&["status", "--json"]), "B"), "2.0.0");

    // The admin goes back to 1.0.0: 2.0.0 stays off until the hold on it is lifted.
    dev.ok(&["rollback"]);
    assert_eq!(dev.power_on(), Some(0));
    assert_eq!(dev.json(&["status", "--json"])["booted"], "A");
    let before = (
        fs::metadata(dev.path("slot-b.rootfs"))
            .unwrap()
            .mtime_nsec(),
        dev.slot("B"),
    );
    dev.ok(&["daemon", "--rounds", "2"]);
    let after = (
        fs::metadata(dev.path("slot-b.rootfs"))
            .unwrap()
            .mtime_nsec(),
        dev.slot("B"),
    );
    assert!(after == before, "the release left by a rollback came back");
    let check = fleet.check();
    assert!(check["update"].is_null(), "{check:#}");
    assert!(skipped_reasons(&check).contains("held"), "{check:#}");
    dev.ok(&["release-hold", "--version", "2.0.0"]);
    assert_eq!(fleet.check()["update"]["version"], "2.0.0");

    // A hold with an end lapses by itself.
    dev.ok(&["hold", "--until", "2000-01-01T00:00:00Z"]);
    assert_eq!(fleet.check()["update"]["version"], "2.0.0");
    let code = dev.run(&["hold", "--until", "next tuesday"]).status.code();
    assert_eq!(code, Some(i32::from(exit::USAGE)));
}

/// Ways `state.json` is found damaged.
fn damage_records(dev: &SimDevice, how: &str) {
    let path = dev.path("state/state.json");
    let bytes = fs::read(&path).unwrap_or_default();
    match how {
        "truncated" => fs::write(&path, &bytes[..bytes.len() / 2]).unwrap(),
        "empty" => fs::write(&path, b"").unwrap(),
        "garbage" => fs::write(&path, b"\x00\xff{not json").unwrap(),
        _ => unreachable!(),
    }
}

fn every_command_works(dev: &SimDevice) {
    let status = dev.json(&["status", "--json"]);
    assert!(status["booted"].is_string(), "{status:#}");
    dev.ok(&["status"]);
    dev.ok(&["commit"]);
    assert!(dev.path("state/state.json").exists());
}

#[test]
fn unreadable_records_are_rebuilt_at_every_lifecycle_step() {
    for how in ["truncated", "empty", "garbage"] {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(&dir.path().join("vendor"));
        let good = repo.bundle("acme-router", "2.0.0", &image("GOOD 2.0.0", 200_000, 2));
        let bad = repo.bundle("acme-router", "3.0.0", &image("BAD 3.0.0", 200_000, 3));
        let dev = factory_device(dir.path(), &repo);
        // Step 1: right after the install, before the reboot.
        assert_eq!(dev.power_on(), Some(0));
        dev.ok(&["install", good.to_str().unwrap()]);
        damage_records(&dev, how);
        assert!(dev.ok(&["status"]).contains("recovered"), "{how}");
        assert_eq!(
            dev.power_on(),
            Some(0),
            "{how}: the healthy trial is committed"
        );
        let status = dev.json(&["status", "--json"]);
        assert_eq!(status["booted"], "B");
        assert_eq!(status["last_result"]["kind"], "committed", "{how}");
        assert!(status["recovered"]["kept_as"].is_string(), "{status:#}");

        // Step 2: during a trial that fails.
        dev.ok(&["install", "--allow-downgrade", bad.to_str().unwrap()]);
        dev.ok(&["simulate-boot"]);
        damage_records(&dev, how);
        let code = dev.run(&["boot"]).status.code();
        assert_eq!(code, Some(i32::from(exit::HEALTH_CHECK)), "{how}");
        assert_eq!(dev.power_on(), Some(0));
        assert_eq!(dev.json(&["status", "--json"])["booted"], "B", "{how}");

        // Step 3: steady state after a commit; then every command, and another install.
        damage_records(&dev, how);
        every_command_works(&dev);
        dev.ok(&["install", "--allow-downgrade", good.to_str().unwrap()]);
        assert_eq!(dev.power_on(), Some(0));
        assert_eq!(
            dev.json(&["status", "--json"])["last_result"]["kind"],
            "committed"
        );
    }
}

#[test]
fn a_trial_interrupted_by_the_bootloader_is_reported_after_a_records_loss() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new(&dir.path().join("vendor"));
    let bundle = repo.bundle("acme-router", "2.0.0", &image("GOOD 2.0.0", 200_000, 2));
    let dev = factory_device(dir.path(), &repo);
    assert_eq!(dev.power_on(), Some(0));
    dev.ok(&["install", bundle.to_str().unwrap()]);
    // The trial boot crashes before `boot` runs; the bootloader falls back to A.
    dev.ok(&["simulate-boot"]);
    dev.ok(&["simulate-boot"]);
    damage_records(&dev, "truncated");
    let out = dev.ok(&["boot"]);
    assert!(out.contains("rollback detected"), "{out}");
    let status = dev.json(&["status", "--json"]);
    assert_eq!(status["booted"], "A");
    assert_eq!(status["last_result"]["kind"], "rolled_back");
}

#[test]
fn slots_that_are_one_device_are_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new(&dir.path().join("vendor"));
    let bundle = repo.bundle("acme-router", "2.0.0", &image("GOOD 2.0.0", 200_000, 2));
    let dev = factory_device(dir.path(), &repo);
    assert_eq!(dev.power_on(), Some(0));
    let slot_a = dev.slot("A");
    // Slot B's device becomes an alias of slot A's (as a by-partlabel link can be).
    fs::remove_file(dev.path("slot-b.rootfs")).unwrap();
    std::os::unix::fs::symlink("slot-a.rootfs", dev.path("slot-b.rootfs")).unwrap();
    let stderr = dev.fails(&["install", bundle.to_str().unwrap()], exit::USAGE);
    assert!(stderr.contains("slot-a.rootfs"), "{stderr}");
    assert_eq!(dev.slot("A"), slot_a, "the running slot was written");
    // A hard link is the same device too.
    fs::remove_file(dev.path("slot-b.rootfs")).unwrap();
    fs::hard_link(dev.path("slot-a.rootfs"), dev.path("slot-b.rootfs")).unwrap();
    dev.fails(&["install", bundle.to_str().unwrap()], exit::USAGE);
    assert_eq!(dev.slot("A"), slot_a);
}

#[test]
fn links_planted_in_the_state_directory_redirect_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new(&dir.path().join("vendor"));
    let bundle = repo.bundle("acme-router", "2.0.0", &image("GOOD 2.0.0", 200_000, 2));
    let dev = factory_device(dir.path(), &repo);
    assert_eq!(dev.power_on(), Some(0));
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let state = dev.path("state");
    for name in ["lock", "health.log", ".state.json.tmp"] {
        let link = state.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
    }
    dev.ok(&["install", bundle.to_str().unwrap()]);
    assert_eq!(dev.power_on(), Some(0));
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(!fs::symlink_metadata(state.join("lock"))
        .unwrap()
        .is_symlink());
    // state.json itself as a link: refused as records, rebuilt, the target untouched.
    fs::rename(state.join("state.json"), dir.path().join("moved.json")).unwrap();
    std::os::unix::fs::symlink(&victim, state.join("state.json")).unwrap();
    dev.ok(&["commit"]);
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    let status = dev.json(&["status", "--json"]);
    assert!(status["recovered"]["reason"]
        .as_str()
        .unwrap()
        .contains("symbolic link"));
}

#[test]
fn parallel_checks_all_succeed() {
    let fleet = Fleet::new(DAEMON);
    fleet.release("2.0.0", "GOOD 2.0.0", 2);
    let children: Vec<_> = (0..12)
        .map(|_| {
            std::process::Command::new(ota_test_support::bin("ota-update"))
                .arg("--config")
                .arg(fleet.device.config())
                .args(["check", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["update"]["version"], "2.0.0");
    }
}
