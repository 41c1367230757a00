//! `updater.toml` (`ota_updater::Config::parse`): TOML, every section's checks, relative path
//! resolution, the trusted keys it reads, the `fw_env.config` it may read, slot device
//! identities.
//!
//! Parsing reads the files the configuration names, so it runs in a temporary directory
//! holding every file the seed configurations name (a valid public key, slot images, a
//! fw_env.config, ...). Inputs naming anything under /proc, /sys or /dev, or any file that is
//! not a small regular file or a directory, are skipped: reading /dev/zero as a key would
//! never end, and the configuration is written by the device's builder, not an attacker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_updater::Config;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = dir.path();
        let key = ota_fuzz::bundle_public().to_pem();
        for (name, content) in [
            ("vendor.pub", key.as_bytes()),
            ("slot-a.rootfs", &[0u8; 512][..]),
            ("slot-b.rootfs", &[1u8; 512]),
            ("slot-a.kernel", &[2u8; 512]),
            ("slot-b.kernel", &[3u8; 512]),
            ("bootloader.json", b"{}"),
            (
                "fw_env.config",
                b"uboot.env 0x0 0x1000\nuboot.env 0x1000 0x1000\n",
            ),
            ("uboot.env", &[0xffu8; 0x2000]),
            ("u-boot-initial-env", b"bootdelay=2\n"),
            ("root.json", ota_fuzz::FIXTURE_ROOT),
            ("device-id", b"fuzz-device-0001\n"),
            ("health-check.sh", b"#!/bin/sh\nexit 0\n"),
            ("ca.pem", b""),
        ] {
            std::fs::write(d.join(name), content).expect("fixture file");
        }
        std::fs::create_dir(d.join("state")).expect("state dir");
        dir
    })
    .path()
}

fn strings<'a>(value: &'a toml::Value, out: &mut Vec<&'a str>) {
    match value {
        toml::Value::String(s) => out.push(s),
        toml::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        toml::Value::Table(t) => t.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Whether `path` (as the configuration would resolve it) may be read by the harness.
fn harmless(base: &Path, path: &str) -> bool {
    let joined: PathBuf = base.join(path);
    let Ok(real) = joined.canonicalize() else {
        // Missing: nothing to read. A path through a missing directory stays missing.
        return !["/proc", "/sys", "/dev"]
            .iter()
            .any(|p| joined.starts_with(p));
    };
    if ["/proc", "/sys", "/dev", "/run"]
        .iter()
        .any(|p| real.starts_with(p))
    {
        return false;
    }
    match real.metadata() {
        Ok(m) => m.is_dir() || (m.is_file() && m.len() <= 1 << 20),
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = dir();
    // Not TOML: refused before any file is read.
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        let _ = Config::parse(text, &base.join("updater.toml"));
        return;
    };
    // The default the parser may read is checked too.
    let mut all = vec!["/etc/fw_env.config"];
    table.values().for_each(|v| strings(v, &mut all));
    if !all.iter().all(|s| harmless(base, s)) {
        return;
    }
    let _ = Config::parse(text, &base.join("updater.toml"));
});
