//! Hostile but validly signed delta bundles (a compromised build holding the release key)
//! against a simulated device, through the real `ota-update install` limited to 128 MiB of
//! address space (`ulimit -v 131072`): an op-list bomb (4,194,304 operations, 306 MB of list
//! in a few KB), a bsdiff control-triple bomb and a 2^63-byte zero operation. Each must be
//! refused cleanly (exit 5, one line), with the failure recorded in `status`, the running slot
//! byte-identical and the bootloader still booting it. Needs `ota-update` built
//! (`cargo build -p ota-updater`).
#![allow(clippy::unwrap_used)]

#[path = "../../ota-core/tests/support/hostile.rs"]
mod hostile;

use ota_core::exit;
use ota_core::keys::SigningKey;
use ota_test_support::{bin, image, slot_of, SimDevice};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Slot size for these tests: the op-list bomb needs an image of a byte per operation.
const BIG_SLOT: u64 = 4 << 20;

/// `ota-update --config CONFIG install BUNDLE` with at most 128 MiB of address space.
fn install_limited(device: &SimDevice, bundle: &Path) -> Output {
    Command::new("sh")
        .args(["-c", "ulimit -v 131072; exec \"$@\"", "sh"])
        .arg(bin("ota-update"))
        .env_remove("CI")
        .arg("--config")
        .arg(device.config())
        .arg("install")
        .arg(bundle)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn status(device: &SimDevice) -> Value {
    device.json(&["status", "--json"])
}

#[test]
fn hostile_deltas_are_refused_recorded_and_leave_the_running_slot_alone() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let public = dir.path().join("vendor.pub");
    fs::write(&public, key.verifying_key().to_pem()).unwrap();
    let device = SimDevice::new(
        &dir.path().join("device"),
        &public,
        &image("GOOD 1.0.0", 200_000, 1),
        "",
    );
    for slot in ["slot-a.rootfs", "slot-b.rootfs"] {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(device.path(slot))
            .unwrap();
        f.set_len(BIG_SLOT).unwrap();
    }
    assert_eq!(device.power_on(), Some(0));
    // The base the deltas name is exactly what the running slot holds.
    let base = device.slot("A");
    let target = |image_size| hostile::Target {
        product: "acme-router",
        version: "2.0.0",
        base: &base,
        image_size,
    };
    let count = 1 << 22;
    let cases = [
        (
            "op-list bomb",
            hostile::op_list_bomb(&key, &target(count), count),
            "operation 0 of delta image 'rootfs' does not match its signed SHA-256",
        ),
        (
            "control-triple bomb",
            hostile::control_triple_bomb(&key, &target(2 << 20), 2 << 20),
            "control entries for 2097152 bytes",
        ),
        (
            "2^63-byte zero operation",
            hostile::huge_zero_op(&key, &target(1 << 20), 1 << 63),
            "past the image end",
        ),
    ];
    let slot_a = device.slot("A");
    for (what, bytes, reason) in cases {
        let bundle = dir.path().join("hostile.bundle");
        fs::write(&bundle, bytes).unwrap();
        let out = install_limited(&device, &bundle);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(i32::from(exit::CORRUPT)),
            "{what}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: {stderr}");
        assert!(stderr.contains(reason), "{what}: {stderr}");
        let s = status(&device);
        assert_eq!(s["last_result"]["kind"], "install_failed", "{what}: {s:#}");
        assert_eq!(s["last_result"]["version"], "2.0.0", "{what}");
        let recorded = s["last_result"]["reason"].as_str().unwrap();
        assert!(recorded.contains(reason), "{what}: {recorded}");
        assert_eq!(s["booted"], "A", "{what}");
        assert_eq!(s["next_boot"], "A", "{what}");
        assert_eq!(slot_of(&s, "A")["boot"]["good"], true, "{what}");
        assert_eq!(slot_of(&s, "B")["boot"]["good"], false, "{what}");
        assert!(
            device.slot("A") == slot_a,
            "{what}: the running slot changed"
        );
    }
    // The bootloader still boots the running slot, healthy.
    assert_eq!(device.power_on(), Some(0));
    assert_eq!(status(&device)["booted"], "A");
    assert!(device.slot("A") == slot_a);
}

#[test]
fn a_legitimate_delta_installs_under_the_same_limit() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let public = dir.path().join("vendor.pub");
    fs::write(&public, key.verifying_key().to_pem()).unwrap();
    let factory = image("GOOD 1.0.0", 200_000, 1);
    let device = SimDevice::new(&dir.path().join("device"), &public, &factory, "");
    assert_eq!(device.power_on(), Some(0));
    let base = device.path("base.img");
    fs::write(&base, device.slot("A")).unwrap();
    let mut new = device.slot("A");
    new[..10].copy_from_slice(b"GOOD 2.0.0");
    new[100_000..120_000].copy_from_slice(&image("x", 20_000, 7));
    let new_path = dir.path().join("new.img");
    fs::write(&new_path, &new).unwrap();
    let bundle = dir.path().join("delta.bundle");
    let out = Command::new(bin("ota-sign"))
        .args(["bundle", "--product", "acme-router", "--version", "2.0.0"])
        .arg("--image")
        .arg(format!("rootfs={}", new_path.display()))
        .arg("--base")
        .arg(format!("rootfs={}", base.display()))
        .arg("-o")
        .arg(&bundle)
        .env("OTA_SIGNING_KEY", key.to_pem().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = install_limited(&device, &bundle);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = status(&device);
    assert_eq!(s["last_result"]["kind"], "installed", "{s:#}");
    assert!(device.slot("B") == new);
}
