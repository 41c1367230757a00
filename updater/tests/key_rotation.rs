//! Rotating the bundle signing key with a device, as docs/keys.md describes it: the fleet
//! first gets a release (signed with the old key) whose image trusts both keys, then releases
//! are signed with the new key, then a release drops the old key. Here the old key is Ed25519
//! and the new one ECDSA P-256, so the rotation is also a move between algorithms. The
//! simulated device's updater.toml stands for the configuration each installed image carries.

#![allow(clippy::unwrap_used)]

use ota_test_support::{
    bin, image, run_ok, updater_toml, SimDevice, FILE_BOOTLOADER, HEALTH_GOOD_MARKER,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ota_sign(args: &[&str]) -> String {
    run_ok(Command::new(bin("ota-sign")).args(args).env_remove("CI"))
}

/// A bundle of a rootfs starting with `GOOD VERSION`, signed with the private key `key`.
fn release(dir: &Path, version: &str, key: &Path) -> PathBuf {
    let rootfs = dir.join(format!("rootfs-{version}"));
    fs::write(&rootfs, image(&format!("GOOD {version}"), 100_000, 5)).unwrap();
    let tag = key.file_stem().unwrap().to_string_lossy().into_owned();
    let out = dir.join(format!("{version}-{tag}.bundle"));
    let image_spec = format!("rootfs={}", rootfs.display());
    ota_sign(&[
        "bundle",
        "--product",
        "acme-router",
        "--version",
        version,
        "--image",
        &image_spec,
        "--key",
        key.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    out
}

/// The configuration the image of the release just installed carries: trusting `keys`.
fn trust(device: &SimDevice, keys: &[&str]) {
    let list = keys
        .iter()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = updater_toml(FILE_BOOTLOADER, HEALTH_GOOD_MARKER)
        .replace(r#"keys = ["vendor.pub"]"#, &format!("keys = [{list}]"));
    assert!(config.contains(&list));
    fs::write(device.config(), config).unwrap();
}

fn install_and_commit(device: &SimDevice, bundle: &Path, slot: &str) {
    device.ok(&["install", bundle.to_str().unwrap()]);
    device.ok(&["simulate-boot"]);
    device.ok(&["boot", "--no-reboot"]);
    assert_eq!(device.json(&["status", "--json"])["booted"], slot);
}

#[test]
fn devices_move_from_the_old_key_to_the_new_one_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let old = keys.join("old.key");
    let new = keys.join("new.key");
    ota_sign(&["keygen", "-o", old.to_str().unwrap()]);
    ota_sign(&[
        "keygen",
        "--algorithm",
        "ecdsa-p256",
        "-o",
        new.to_str().unwrap(),
    ]);
    let device_dir = dir.path().join("device");
    let device = SimDevice::new(
        &device_dir,
        &keys.join("old.key.pub"),
        &image("GOOD 1.0.0", 100_000, 1),
        "",
    );
    fs::copy(keys.join("new.key.pub"), device.path("new.pub")).unwrap();
    device.ok(&["simulate-boot"]);
    device.ok(&["boot", "--no-reboot"]);

    // Before the rotation release, the new key is not trusted: refused, nothing changes.
    let early = release(dir.path(), "2.0.0", &new);
    let slot_b = device.slot("B");
    let err = device.fails(&["install", early.to_str().unwrap()], 4);
    assert!(err.contains("signature check failed"), "{err}");
    assert_eq!(device.slot("B"), slot_b);

    // 1. The rotation release: signed with the old key, its image trusts both keys.
    install_and_commit(&device, &release(dir.path(), "2.0.0", &old), "B");
    trust(&device, &["vendor.pub", "new.pub"]);
    // 2. Releases are signed with the new key: they install.
    install_and_commit(&device, &release(dir.path(), "3.0.0", &new), "A");
    // 3. A later release drops the old key: bundles signed with it are refused from then on.
    trust(&device, &["new.pub"]);
    let stale = release(dir.path(), "4.0.0", &old);
    device.fails(&["install", stale.to_str().unwrap()], 4);
    install_and_commit(&device, &release(dir.path(), "4.0.0", &new), "B");
}
