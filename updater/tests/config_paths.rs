//! Relative paths of the configuration resolve against its directory whatever form `--config`
//! has: a configuration given as a bare file name, from its own directory, runs the health
//! check `./health-check.sh` next to it, not a `health-check.sh` found in PATH.

// Test helpers unwrap freely: clippy's allow-unwrap-in-tests covers only #[test] functions.
#![allow(clippy::unwrap_used)]

use ota_core::keys::SigningKey;
use ota_test_support::{sign_rootfs_bundle, updater_toml, FILE_BOOTLOADER};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

const SLOT_SIZE: u64 = 256 * 1024;

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Signs a bundle of release `version` for `acme-router` whose rootfs is `rootfs`.
fn bundle(dir: &Path, key: &SigningKey, version: &str, rootfs: Vec<u8>) -> std::path::PathBuf {
    let path = dir.join(format!("{version}.bundle"));
    sign_rootfs_bundle(key, "acme-router", version, &rootfs, 64 * 1024, &path);
    path
}

#[test]
fn bare_config_file_name_runs_the_health_check_next_to_it_not_from_path() {
    let tmp = tempfile::tempdir().unwrap();
    let device = tmp.path().join("device");
    let decoys = tmp.path().join("decoys");
    fs::create_dir(&device).unwrap();
    fs::create_dir(&decoys).unwrap();
    let key = SigningKey::generate();
    fs::write(device.join("vendor.pub"), key.verifying_key().to_pem()).unwrap();
    for slot in ["a", "b"] {
        let f = fs::File::create(device.join(format!("slot-{slot}.rootfs"))).unwrap();
        f.set_len(SLOT_SIZE).unwrap();
    }
    script(&device.join("health-check.sh"), "exit 0");
    script(
        &decoys.join("health-check.sh"),
        "echo decoy from PATH; exit 1",
    );
    fs::write(
        device.join("updater.toml"),
        updater_toml(
            FILE_BOOTLOADER,
            "command = [\"./health-check.sh\"]\ntimeout_secs = 10",
        ),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        decoys.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ota = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ota-update"))
            .current_dir(&device)
            .env("PATH", &path)
            .args(["--config", "updater.toml"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ota-update {args:?}: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    ota(&["simulate-boot"]);
    ota(&["boot", "--no-reboot"]);
    let v2 = bundle(tmp.path(), &key, "2.0.0", vec![0x5a; 100_000]);
    ota(&["install", v2.to_str().unwrap()]);
    assert!(ota(&["simulate-boot"]).contains("slot B"));
    let boot = ota(&["boot", "--no-reboot"]);
    assert!(boot.contains("committed"), "{boot}");
    let status: serde_json::Value = serde_json::from_str(&ota(&["status", "--json"])).unwrap();
    assert_eq!(status["booted"], "B");
    assert_eq!(status["last_result"]["kind"], "committed");
}
